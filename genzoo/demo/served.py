"""The models a page serves and what it offers for each, read from their declarations; the numbers a visitor sends,
clamped to the ranges the model declares; images as the page shows them. Nothing here imports gradio.

A model gets one tab per thing it declares it can do (``tabs``):
  sample        every model
  restore       a completion of given pixels (diffusion, autoregressive) or a latent space: genzoo.apps.restore
  interpolate   a latent space (between two seeds), and with an encoder also between two images
  classify      a likelihood whose cost can be chosen (or is exact): p(y|x) by Bayes' rule where the model is
                class-conditional, and the out-of-distribution verdict
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import GenzooError
from ..models.base import Option

MAX_IMAGES = 64                      # images one Sample click draws
MAX_SEED = 2**31 - 1
GRID_PX = 512                        # a grid is scaled up (nearest neighbour) to about this width
IMAGE_PX = 224                       # and one image to about this side
EACH_CLASS = "each class in turn"
TAB_TITLES = {"sample": "Sample", "restore": "Restore", "interpolate": "Interpolate", "classify": "Classify and OOD"}
# the cost of a likelihood on the page: a VAE's IWAE bound with k importance samples, a diffusion model's bound on
# this many timesteps, flow matching's ODE estimate in this many steps (genzoo classify's defaults are 100 and 50;
# these answer in seconds on a CPU)
PAGE_IWAE_K = 20
PAGE_BOUND_STEPS = 10


@dataclass
class Served:
    """One model on the page: its name there, the name its real-or-fake answers are stored under, its data set."""
    name: str
    key: str
    model: torch.nn.Module
    data: str
    lock: threading.Lock = field(default_factory=threading.Lock)     # one computation at a time per model
    cache: dict = field(default_factory=dict)                         # the OOD reference scores, the classifier


def open_models(refs, device: str = "cpu", ema: bool = True) -> list[Served]:
    """The models named by ``refs`` (zoo names, run folders, hf:// references; none: every zoo model), loaded."""
    from ..checkpoint import load, read_config
    from ..hub import zoo_names
    from .judgements import model_key
    refs = list(dict.fromkeys(str(r) for r in refs)) if refs else zoo_names()
    if not refs:
        raise GenzooError("no model to serve: name zoo models or run folders (genzoo ships no zoo model here).")
    served = []
    for ref in refs:
        config = read_config(ref)
        served.append(Served(name=ref.rstrip("/"), key=model_key(ref), model=load(ref, ema=ema, device=device),
                             data=config["data"]))
    return served


def likelihood_cost(model) -> dict | None:
    """The keywords that score log p(x) at the page's cost (``PAGE_IWAE_K``, ``PAGE_BOUND_STEPS``), or None when the
    model declares no likelihood the page can afford."""
    from ..likelihood import estimator_of
    try:
        return estimator_of(model, k=PAGE_IWAE_K, steps=PAGE_BOUND_STEPS, purpose="the page")[1]
    except GenzooError:
        return None


def tabs(model) -> tuple[str, ...]:
    """The tabs of ``model``'s page, from its declared capabilities (module docstring), in order."""
    from ..apps.restore import capabilities as restore_tasks
    caps = model.capabilities
    out = ["sample"]
    if restore_tasks(model):
        out.append("restore")
    if caps.latents:
        out.append("interpolate")
    if likelihood_cost(model) is not None:
        out.append("classify")
    return tuple(out)


def interpolation_modes(model) -> tuple[str, ...]:
    caps = model.capabilities
    return ("two seeds",) + (("two test images", "two uploads") if caps.encode else ()) if caps.latents else ()


# -- the numbers a visitor sends

def number(value, low: float | None, high: float | None, what: str, integer: bool = True):
    """``value`` clamped to [low, high] (a bound None is open), rounded for an integer; a GenzooError naming
    ``what`` when it is empty or not a finite number."""
    if value is None or value == "":
        raise GenzooError(f"{what} is empty: give a number.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GenzooError(f"{what} must be a number, got {value!r:.40}.") from None
    if not math.isfinite(value):
        raise GenzooError(f"{what} must be a finite number, got {value}.")
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return int(round(value)) if integer else value


def option_value(opt: Option, value):
    """One sampling option's value from the page: None (empty) leaves it to the model; a number is clamped to the
    option's declared range, then checked as ``genzoo sample --opt`` checks it."""
    if value is None or value == "":
        return None
    if opt.type in (int, float):
        value = number(value, opt.low, opt.high, opt.name, integer=opt.type is int)
    return opt.check(value)


def sample_options(model, values: dict) -> dict:
    """{name: value} from the page's widgets -> the model's checked sampling options (empty ones dropped)."""
    from ..models.base import check_sample_options
    out = {}
    for name, value in values.items():
        opt = model.capabilities.option(name)
        if opt is None:
            raise GenzooError(f"{type(model).__name__} has no sampling option {name!r}.")
        value = option_value(opt, value)
        if value is not None:
            out[name] = value
    return check_sample_options(model, out)


def class_choices(model) -> list[str]:
    return [str(k) for k in range(model.config.num_classes)] if model.capabilities.conditional else []


def labels(model, choice, n: int) -> torch.Tensor | None:
    """The labels of n images: None for an unconditional model; each class in turn, or one class."""
    if not model.capabilities.conditional:
        return None
    k = model.config.num_classes
    if choice in (None, "", EACH_CLASS):
        return torch.arange(n) % k
    return torch.full((n,), number(choice, 0, k - 1, "the class"), dtype=torch.long)


# -- images as the page shows them

def picture(images: torch.Tensor, nrow: int | None = None, width_px: int = GRID_PX) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (H', W', 3) uint8 picture: a grid with ``nrow`` columns (square by default),
    scaled up by a whole factor (nearest neighbour, so pixels stay sharp) to about ``width_px`` wide."""
    from ..images import make_grid
    pad = 2 if len(images) > 1 else 0
    grid = make_grid(images.cpu(), nrow=nrow, pad=pad)
    grid = grid.repeat(3, axis=2) if grid.shape[2] == 1 else grid
    scale = max(1, round(width_px / grid.shape[1]))
    return grid.repeat(scale, 0).repeat(scale, 1)


@lru_cache(maxsize=8)
def test_split(data: str):
    """The data set's test split (uint8 images, labels), read once."""
    from ..data import load_split
    return load_split(data, "test")


def test_image(served: Served, index) -> tuple[torch.Tensor, int]:
    """(the test image ``index`` (clamped to the split) as (1, C, H, W) in [0, 1], its label (-1: unlabelled))."""
    split = test_split(served.data)
    i = number(index, 0, len(split.images) - 1, "the test image number")
    c = served.model.config
    x = split.images[i:i + 1].float() / 255
    if tuple(x.shape[1:]) != (c.channels, c.image_size, c.image_size):
        raise GenzooError(f"{served.data}'s test images are {tuple(x.shape[1:])}; the model takes "
                          f"{(c.channels, c.image_size, c.image_size)}.")
    return x, int(split.labels[i])


def describe(served: Served) -> str:
    """One line on the model: its family, data set, likelihood and what it is conditioned on."""
    caps = served.model.capabilities
    c = served.model.config
    lik = caps.likelihood
    likelihood = {"exact": "an exact likelihood", "bound": f"a bound on its likelihood ({lik.estimator})",
                  "estimate": f"an estimate of its likelihood ({lik.estimator})"}.get(
        lik.kind, f"no likelihood ({lik.reason})")
    cond = f"{c.num_classes} classes" if caps.conditional else "unconditional"
    where = Path(served.name).name if served.name != served.key else served.name
    return (f"**{where}**: {type(served.model).__name__} on {served.data} ({c.channels}x{c.image_size}x"
            f"{c.image_size}, {cond}), {likelihood}.")
