"""Small configs and a deterministic model shared by the tests."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models import default_config, register_model
from genzoo.models.base import GenerativeModel

# flow matching's solver steps: 4 sampling steps, 4 Heun steps of the ODE likelihood
TINY = {"width": 8, "latent_dim": 4, "res_blocks": 1, "mlp_hidden": 16, "sample_steps": 4, "likelihood_steps": 4}


def tiny_config(name: str, channels: int = 1, image_size: int = 8):
    cfg = default_config(name)
    fields = {f.name for f in dataclasses.fields(cfg)}
    over = {k: v for k, v in TINY.items() if k in fields}
    return dataclasses.replace(cfg, channels=channels, image_size=image_size, num_classes=10, **over)


def tiny_args(name: str) -> list[str]:
    """Command-line arguments (--set KEY=VALUE ...) that make a registered model tiny."""
    fields = {f.name for f in dataclasses.fields(default_config(name))}
    return [a for k, v in TINY.items() if k in fields for a in ("--set", f"{k}={v}")]


@dataclass
class AEConfig:
    channels: int = 1
    image_size: int = 8
    num_classes: int = 0
    width: int = 8
    nan_after_steps: int = 0     # > 0: the loss turns NaN once this many losses were computed


class DeterministicAE(GenerativeModel):
    """A tiny autoencoder with a noise-free loss and no batch norm (for DDP and NaN tests)."""

    Config = AEConfig

    def __init__(self, config: AEConfig):
        super().__init__(config)
        d = config.channels * config.image_size ** 2
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d, config.width), nn.Tanh())
        self.dec = nn.Linear(config.width, d)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def loss(self, batch, phase="model"):
        x = batch["x"]
        rec = self.dec(self.enc(x)).view_as(x)
        loss = F.mse_loss(rec, x, reduction="none").flatten(1).sum(1).mean()
        self.calls += 1
        if self.config.nan_after_steps and self.calls.item() > self.config.nan_after_steps:
            loss = loss * float("nan")
        return {"loss": loss}

    @torch.no_grad()
    def sample(self, n, labels=None, generator=None):
        h = torch.rand(n, self.config.width, generator=generator) * 2 - 1
        c, s = self.config.channels, self.config.image_size
        return self.dec(h).view(n, c, s, s).sigmoid()


def register_test_models() -> None:
    register_model("test-ae", DeterministicAE, description="deterministic autoencoder for tests")
