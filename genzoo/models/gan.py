"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs").

Generator: z ~ N(0, I) -> linear -> transposed convolutions with batch norm and ReLU -> tanh.
Discriminator: strided convolutions with LeakyReLU(0.2), batch norm after the first.
Losses (Goodfellow et al. 2014): D maximises log D(x) + log(1 - D(G(z))) (eq. 1); G minimises
-log D(G(z)), the non-saturating form of section 3 ("ns"), or log(1 - D(G(z))) ("minimax").
Both are written with softplus on logits: -log sigmoid(l) = softplus(-l).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import conv_down, conv_up
from .base import GenerativeModel

LOSSES = ("ns", "minimax")


@dataclass
class GANConfig:
    channels: int = 1          # set from the data set
    image_size: int = 28       # set from the data set; divisible by 4
    num_classes: int = 0       # unused until the conditional presets
    latent_dim: int = 100
    width: int = 64            # discriminator's first-layer channels; generator's last hidden layer
    loss: str = "ns"           # one of LOSSES

    def __post_init__(self):
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")


def dcgan_init(module: nn.Module) -> None:
    # weights N(0, 0.02), batch-norm scales N(1, 0.02): section 4 of the paper
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class GAN(GenerativeModel):
    """DCGAN at 28x28 (or any size divisible by 4), non-saturating loss."""

    Config = GANConfig
    phases = ("discriminator", "generator")
    train_defaults = {"lr": 2e-4, "adam_betas": (0.5, 0.999), "batch_size": 64, "steps": 10000}

    def __init__(self, config: GANConfig):
        super().__init__(config)
        c, w, s = config.channels, config.width, config.image_size // 4
        self.bottom = (2 * w, s, s)
        self.generator = nn.Sequential(
            nn.Linear(config.latent_dim, 2 * w * s * s, bias=False), nn.BatchNorm1d(2 * w * s * s), nn.ReLU(),
            nn.Unflatten(1, self.bottom),                                    # (B, 2w, H/4, W/4)
            conv_up(2 * w, w, norm=True, act=nn.ReLU()),                     # (B, w, H/2, W/2)
            nn.ConvTranspose2d(w, c, 4, stride=2, padding=1), nn.Tanh(),      # (B, C, H, W) in [-1, 1]
        )
        self.discriminator = nn.Sequential(
            conv_down(c, w, act=nn.LeakyReLU(0.2)),                          # (B, w, H/2, W/2)
            conv_down(w, 2 * w, norm=True, act=nn.LeakyReLU(0.2)),           # (B, 2w, H/4, W/4)
            nn.Flatten(), nn.Linear(2 * w * s * s, 1),                       # (B, 1) logit
        )
        self.apply(dcgan_init)

    def phase_parameters(self, phase: str):
        return list(getattr(self, phase).parameters())

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents (B, latent_dim)."""
        return self.generator(z)

    def loss(self, batch: dict, phase: str = "discriminator") -> dict:
        x = batch["x"] * 2 - 1
        z = torch.randn(x.shape[0], self.config.latent_dim, device=x.device)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.generate(z)
            # real and fake go through D separately so each batch-norm batch is pure (as in the paper's code)
            real_l = self.discriminator(x).float().squeeze(1)
            fake_l = self.discriminator(fake).float().squeeze(1)
            loss = F.softplus(-real_l).mean() + F.softplus(fake_l).mean()
            return {"loss": loss, "d_real": torch.sigmoid(real_l).mean().detach(),
                    "d_fake": torch.sigmoid(fake_l).mean().detach()}
        if phase == "generator":
            fake_l = self.discriminator(self.generate(z)).float().squeeze(1)
            loss = F.softplus(-fake_l).mean() if self.config.loss == "ns" else -F.softplus(fake_l).mean()
            return {"loss": loss}
        raise ValueError(f"unknown phase {phase!r}; this model has {self.phases}")

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.device)
        return ((self.generate(z).float() + 1) / 2).clamp(0, 1)
