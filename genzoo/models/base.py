"""The contract every genzoo model meets, so that one trainer, one checkpoint format and one
evaluation serve all families.

A model is an ``nn.Module`` built from one config dataclass (``Config``) and must provide
  loss(batch, phase) -> dict   key "loss" is what that phase's optimiser steps on; other keys are
                               logged. ``batch`` is {"x": (B, C, H, W) float in [0, 1], "y": (B,) int64}.
  sample(n, labels=None, generator=None) -> (n, C, H, W) float in [0, 1]
and may provide the capabilities it really has: ``log_prob(x, ...)`` (nats per image),
``encode``/``decode``, class conditioning (``conditional = True``, labels in [0, num_classes)).

``phases`` names the optimisers, stepped in this order once per training step (a VAE has one,
a GAN has "discriminator" then "generator"); ``phase_parameters(phase)`` says what each steps,
``phase_repeats`` and ``phase_lr_scale`` how often and how fast.
``forward`` is ``loss`` so that DistributedDataParallel sees the computation.
"""
from __future__ import annotations

import torch
from torch import nn


class GenerativeModel(nn.Module):
    Config: type = None          # the model's config dataclass
    phases: tuple[str, ...] = ("model",)
    conditional: bool = False    # True when sample() and loss() use class labels
    exact_likelihood: bool = False   # True when log_prob is exact and costs about one forward pass (flows,
                                     # autoregressive models): the trainer then reports it on the test set
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
    def has_likelihood(self) -> bool:
        """Whether log_prob is a likelihood (exact or a stated bound) that evaluation may report."""
        return hasattr(self, "log_prob")

    @property
    def no_likelihood_reason(self) -> str:
        return "a GAN has none to report"

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")
