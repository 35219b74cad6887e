"""Test-set likelihood in the units of docs/metrics.md: nats per image on dyn-binarized data (the test
set binarized once with seed 0), or a density over [0, 1]^D on 8-bit data dequantized once with a
seeded uniform draw, x = (k + u) / 256, which bits_per_dim turns into bits per dimension."""
from __future__ import annotations

import contextlib
import math

import torch
from tqdm import tqdm

from .errors import GenzooError
from .models.base import require


def binarize_fixed(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float {0, 1}, one Bernoulli draw with p = k/255 from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(images.float() / 255, generator=g)


def dequantize_fixed(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (k + u) / 256 in [0, 1), u ~ U[0, 1) from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    k = images.float()
    return (k + torch.rand(k.shape, generator=g)) / 256


def scoring_layout(model):
    """``model``, a VAE on the CPU stored with channels-last conv weights, for scoring (in place; the values do not
    change). Its bound decodes k latents per image, and oneDNN runs those convolutions faster in that layout: the
    IWAE bound at k = 1000 ran 20% faster for the conv VAE and 10-16% for the PixelVAE on this project's CPUs."""
    if model.capabilities.likelihood.elbo and model.device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def full_fp32():
    """Float32 convolutions and matmuls without TF32 on CUDA while scoring (cuDNN allows TF32 by default, which
    keeps 10 bits of each input's mantissa): a bound summed over hundreds of pixels, or k latents, must not carry
    that rounding. The previous flags come back on exit; CPU arithmetic is untouched."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """bpd of 8-bit data from the NLL (nats per image) of a density over [0, 1]^D (docs/metrics.md)."""
    return (nll_nats / dims + math.log(256)) / math.log(2)


def estimator_of(model, *, k: int | None = None, steps: int | None = None,
                 purpose: str = "scoring a likelihood") -> tuple[str, dict]:
    """How ``model.log_prob`` gives log p(x), read from its declared Likelihood, with the caller's cost:
    ("exact", {}), ("iwae", {"k": k}), ("vlb", {"steps": steps}) or ("ode", {"steps": steps}) (a knob left None
    takes the model's default; {} where that is its full bound). A GenzooError gives the reason when there is none
    (``purpose`` says what wanted it), when the bound's or the estimate's cost cannot be chosen, or when the cost is
    out of the declared range. The one place the applications (classify, ood) turn a declaration and a user's k or
    steps into log_prob's keywords."""
    require(model, "likelihood", purpose)
    declared = model.capabilities.likelihood
    if declared.kind == "exact":
        return declared.estimator, {}
    if not declared.knob:
        raise GenzooError(f"{purpose} is not possible with this {type(model).__name__}: its bound has no chosen cost "
                          "(no k or steps keyword), and its one bound costs the model's full bound for every image.")
    return declared.estimator, declared.cost({"k": k, "steps": steps}.get(declared.knob))


def describe(estimator_name: str, cost: dict, target: str = "log p(x)") -> str:
    """An estimator of ``target`` in words, as results state it (docs/metrics.md)."""
    if estimator_name == "exact":
        return f"exact {target}"
    if estimator_name == "iwae":
        return f"IWAE bound on {target}, k = {cost['k']}"
    if estimator_name == "ode":
        steps = f"{cost['steps']} Heun steps" if "steps" in cost else "the model's default Heun steps"
        return f"ODE likelihood (Hutchinson) of {target}, {steps}"
    if "steps" in cost:
        return f"variational bound on {target}, {cost['steps']} timesteps (stratified estimate)"
    return f"variational bound on {target}, all timesteps"


def is_binarized(model) -> bool:
    return bool(getattr(model.config, "binarize", False)) and getattr(model.config, "likelihood", "bernoulli") \
        == "bernoulli"


@torch.no_grad()
@full_fp32()
def mean_bound(model, images: torch.Tensor, estimator: str = "elbo", k: int = 1, batch_size: int = 500,
               seed: int = 0, progress: bool = True, labels: torch.Tensor | None = None) -> float:
    """Mean log-likelihood (or bound) in nats over ``images`` (uint8): "elbo", or "iwae"/"exact"/"vlb"/"ode" (the
    declared estimator, at its default cost but for the IWAE k) via log_prob.

    Binary-data models get the seed-0 binarized set, others the seed-0 dequantized set; the latent noise is
    drawn from a seeded generator. ``labels`` (N,) are passed on for class-conditional models: log p(x|y).
    """
    x_all = binarize_fixed(images, seed) if is_binarized(model) else dequantize_fixed(images, seed)
    g = torch.Generator(device=model.device).manual_seed(seed + 1)
    declared = model.capabilities.likelihood
    total = 0.0
    desc = f"{estimator} k={k}" if declared.knob == "k" and estimator != "elbo" else estimator   # k: IWAE's only
    for start in tqdm(range(0, len(x_all), batch_size), desc=desc, disable=not progress, leave=False):
        x = x_all[start:start + batch_size].to(model.device)
        kw = {"labels": labels[start:start + batch_size].to(model.device)} if labels is not None else {}
        if estimator == "elbo":
            bound = model.elbo(x, generator=g, **kw)
        else:
            if declared.knob == "k":
                kw["k"] = k
            if declared.stochastic:
                kw["generator"] = g
            bound = model.log_prob(x, **kw)
        total += bound.double().sum().item()
    return total / len(x_all)


def score_split(model, images: torch.Tensor, labels: torch.Tensor | None = None, *, estimator: str, k: int = 1,
                seed: int = 0, batch_size: int = 500, progress: bool = True) -> dict:
    """The mean negative log-likelihood (or bound) of a split in docs/metrics.md's units: ``nll_nats`` on
    binarized data or ``bpd`` on 8-bit data from ``log_prob`` (the declared estimator: "exact", "iwae" with k,
    "vlb" or "ode" at the model's default cost), and
    ``elbo_nats`` or ``elbo_bpd`` from the ELBO (estimator "elbo"). ``images`` are uint8 (N, C, H, W);
    ``labels`` score a class-conditional model on log p(x|y). The one way genzoo scores a split."""
    nll = -mean_bound(model, images, estimator, k=k, batch_size=batch_size, seed=seed, progress=progress,
                      labels=labels)
    prefix = "elbo_" if estimator == "elbo" else ""
    if is_binarized(model):
        return {f"{prefix or 'nll_'}nats": nll}
    return {f"{prefix}bpd": bits_per_dim(nll, images[0].numel())}
