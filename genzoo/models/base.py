"""The contract every genzoo model meets, so that one trainer, one checkpoint format and one
evaluation serve all families.

A model is an ``nn.Module`` built from one config dataclass (``Config``) and must provide
  loss(batch, phase) -> dict   key "loss" is what that phase's optimiser steps on; other keys are
                               logged. ``batch`` is {"x": (B, C, H, W) float in [0, 1], "y": (B,) int64}.
  sample(n, labels=None, generator=None) -> (n, C, H, W) float in [0, 1]
and declares what else it can do in ``capabilities`` (a ``Capabilities``): its likelihood (exact, a
bound or an estimate with the keyword that sets its cost, or none and why), latents, an encoder, reconstruction,
completion of given pixels, class conditioning, and its sampling options with their types and ranges.
Everything around the models (training, evaluation, the applications, the CLI) reads that
declaration; nothing inspects method names or signatures.

``phases`` names the optimisers, stepped in this order once per training step (a VAE has one,
a GAN has "discriminator" then "generator"); ``phase_parameters(phase)`` says what each steps,
``phase_repeats`` and ``phase_lr_scale`` how often and how fast.
``forward`` is ``loss`` so that DistributedDataParallel sees the computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import GenzooError


@dataclass(frozen=True)
class Option:
    """One keyword of a model's ``sample``: its type, its range or choices, its default (None: the model
    chooses, as ``help`` says) and what it does. ``genzoo sample --opt``, the Python API and the demo page all
    validate against it."""
    name: str
    type: type                       # int, float, str or bool
    default: object = None
    low: float | None = None         # inclusive bounds of an int or float; None: unbounded on that side
    high: float | None = None
    choices: tuple[str, ...] = ()    # the values a str option takes
    help: str = ""
    low_open: bool = False           # True: low itself is excluded

    def check(self, value):
        """``value`` as this option's type, or a GenzooError that names the option and what it takes."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            raise GenzooError(f"{self.name} must be true or false, got {value!r}.")
        if self.type is str:
            if isinstance(value, str) and (not self.choices or value in self.choices):
                return value
            raise GenzooError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}.")
        ok = isinstance(value, int) if self.type is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not math.isfinite(value) \
                or (self.low is not None and (value < self.low or (self.low_open and value == self.low))) \
                or (self.high is not None and value > self.high):
            raise GenzooError(f"{self.name} must be {'an integer' if self.type is int else 'a number'} in "
                              f"{self.range_text()}, got {value!r}.")
        return self.type(value)

    def range_text(self) -> str:
        lo = "(-inf" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
        hi = "inf)" if self.high is None else f"{self.high:g}]"
        return f"{lo}, {hi}"


@dataclass(frozen=True)
class Likelihood:
    """How ``log_prob(x, labels=None, **cost)`` scores an image, in nats (docs/metrics.md for the units)."""
    kind: str = "none"               # "exact" (one pass per image), "bound" (a lower bound on log p), "estimate"
                                     # (an unbiased stochastic estimate of the model's log-density, up to the
                                     # error of an ODE solver), "none"
    estimator: str = ""              # "exact", "iwae" (importance-weighted bound), "vlb" (diffusion's variational
                                     # bound) or "ode" (the probability-flow ODE with Hutchinson's trace estimate)
    knob: str = ""                   # the log_prob keyword that sets a bound's or an estimate's cost: "k"
                                     # (importance samples) or "steps" (timesteps, or ODE solver steps); "" where
                                     # the cost is fixed
    knob_default: int | None = None  # None: the model's full bound
    knob_max: int | None = None
    stochastic: bool = False         # log_prob takes a seeded ``generator`` (its value is a random estimate)
    elbo: bool = False               # the model also has ``elbo(x, labels, generator)``, the one-sample bound
                                     # training reports at its end and validates on
    reason: str = ""                 # kind "none": why there is none

    def cost(self, value: int | None = None) -> dict:
        """The keyword arguments that set the bound's (or the estimate's) cost to ``value`` (its default when
        None), checked."""
        if not self.knob:
            return {}
        value = self.knob_default if value is None else value
        if value is None:
            return {}
        top = self.knob_max
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (top and value > top):
            what = "estimate" if self.kind == "estimate" else "bound"
            raise GenzooError(f"the {what}'s {self.knob} must be an integer between 1 and {top or 'inf'}, got "
                              f"{value!r}.")
        return {self.knob: int(value)}


@dataclass(frozen=True)
class Capabilities:
    """What a model can do beyond ``loss`` and ``sample``; each flag names the methods it promises."""
    likelihood: Likelihood = Likelihood(reason="this model defines none")
    conditional: bool = False        # sample/loss/log_prob take labels in [0, num_classes)
    null_label: bool = False         # conditional and trained with a "no class" label (classifier-free guidance):
                                     # ``model.null_label`` samples or restores without a class
    latents: bool = False            # prior_latents(n, generator) and decode(z, labels): a latent space
    encode: bool = False             # encode_latents(x, labels): images to that latent space
    reconstruct: bool = False        # reconstruct(x, labels)
    completion: str = ""             # how given pixels are completed: "diffusion" (predict_eps, q_sample,
                                     # alphas_cumprod), "autoregressive" (complete, value_log_probs), "" none
    traversable_codes: tuple[str, ...] = ()   # traverse(code, ...) draws a grid along each of these codes
    sample_options: tuple[Option, ...] = ()

    def option(self, name: str) -> Option | None:
        return next((o for o in self.sample_options if o.name == name), None)


def require(model, capability: str, purpose: str) -> None:
    """A GenzooError saying why ``model`` cannot serve ``purpose`` unless it declares ``capability``
    ("likelihood", "conditional", "latents", "encode", "reconstruct", "completion")."""
    caps, name = model.capabilities, type(model).__name__
    if capability == "likelihood":
        if caps.likelihood.kind == "none":
            raise GenzooError(f"{purpose} needs a likelihood; this {name} defines none ({caps.likelihood.reason}).")
        return
    if not getattr(caps, capability):
        what = {"conditional": "is unconditional", "latents": "has no latent space (prior_latents and decode)",
                "encode": "cannot map images to latents (it declares no encoder)",
                "reconstruct": "does not reconstruct images", "completion": "cannot complete given pixels"}
        raise GenzooError(f"{purpose} is not possible: this {name} {what[capability]}.")


def check_sample_options(model, options: dict | None) -> dict:
    """``options`` (keyword -> value) checked against the model's declared sampling options and converted to
    their types; a GenzooError names an unknown keyword or a value out of range."""
    declared = model.capabilities.sample_options
    out = {}
    for key, value in (options or {}).items():
        opt = next((o for o in declared if o.name == key), None)
        if opt is None:
            names = ", ".join(o.name for o in declared) or "none"
            raise GenzooError(f"{type(model).__name__} has no sampling option {key!r}; its options are: {names}.")
        out[key] = opt.check(value)
    return out


class GenerativeModel(nn.Module):
    Config: type = None          # the model's config dataclass
    phases: tuple[str, ...] = ("model",)
    conditional: bool = False    # True when sample() and loss() use class labels
    # training-config defaults that suit this model (lr, betas, batch size); the user's --set wins
    train_defaults: dict = {}

    def __init__(self, config):
        super().__init__()
        self.config = config

    def phase_parameters(self, phase: str):
        return list(self.parameters())

    def phase_repeats(self, phase: str) -> int:
        """Optimiser steps of this phase per training step, each on a fresh batch (a WGAN critic: 5)."""
        return 1

    def phase_lr_scale(self, phase: str) -> float:
        """This phase's learning rate as a multiple of the training lr (two time-scale updates)."""
        return 1.0

    def forward(self, batch: dict, phase: str = "model") -> dict:
        return self.loss(batch, phase)

    def loss(self, batch: dict, phase: str = "model") -> dict:
        raise NotImplementedError

    @property
    def capabilities(self) -> Capabilities:
        """What this model can do (it may depend on the config: a conditional VAE, a VAE-GAN)."""
        return Capabilities(conditional=self.conditional)

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")
