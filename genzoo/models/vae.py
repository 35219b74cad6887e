"""Convolutional VAE with a Bernoulli decoder (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"), trained on dynamically binarized images.

loss = -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || N(0, I))   (nats per image, eq. 10 of the
paper with the Gaussian KL in closed form, its appendix B)
log_prob(x) is the importance-weighted bound of Burda et al. 2016 (eq. 8):
  log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],   z_i ~ q(z|x)
which tightens as k grows and equals the ELBO in expectation at k = 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ResBlock, conv_down, conv_up
from .base import GenerativeModel

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    channels: int = 1          # set from the data set
    image_size: int = 28       # set from the data set; divisible by 4
    num_classes: int = 0       # unused by this model
    latent_dim: int = 32
    width: int = 64            # channels after the first downsampling, doubled after the second
    res_blocks: int = 0        # residual blocks at each resolution, encoder and decoder
    binarize: bool = True      # dynamic binarization of the training batch (fresh draw per step)

    def __post_init__(self):
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")


class VAE(GenerativeModel):
    """Convolutional VAE, Bernoulli decoder on dyn-binarized images; log_prob via the IWAE bound."""

    Config = VAEConfig
    train_defaults = {"lr": 1e-3, "batch_size": 128, "steps": 15000}

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c, w, s = config.channels, config.width, config.image_size // 4
        self.bottom = (2 * w, s, s)
        self.encoder = nn.Sequential(
            conv_down(c, w), *[ResBlock(w) for _ in range(config.res_blocks)],           # (B, w, H/2, W/2)
            conv_down(w, 2 * w), *[ResBlock(2 * w) for _ in range(config.res_blocks)],   # (B, 2w, H/4, W/4)
            nn.SiLU(), nn.Flatten(), nn.Linear(2 * w * s * s, 2 * config.latent_dim),
        )
        self.decoder_in = nn.Linear(config.latent_dim, 2 * w * s * s)
        self.decoder = nn.Sequential(
            *[ResBlock(2 * w) for _ in range(config.res_blocks)],
            conv_up(2 * w, w), *[ResBlock(w) for _ in range(config.res_blocks)],
            nn.SiLU(), nn.ConvTranspose2d(w, c, 4, stride=2, padding=1),                # (B, C, H, W) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x) = N(mu, diag(exp(logvar))); x in [0, 1]. Returns (mu, logvar), each (B, latent)."""
        mu, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decoder_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_in(z).view(-1, *self.bottom)
        return self.decoder(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means p(x=1|z) in [0, 1], (B, C, H, W)."""
        return torch.sigmoid(self.decoder_logits(z))

    def _terms(self, x: torch.Tensor, generator: torch.Generator | None = None):
        # per-image reconstruction NLL and KL, each (B,), in nats, fp32
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * (0.5 * logvar).exp()
        logits = self.decoder_logits(z).float()
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        mu, logvar = mu.float(), logvar.float()
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl

    def loss(self, batch: dict, phase: str = "model") -> dict:
        x = batch["x"]
        if self.config.binarize:
            x = torch.bernoulli(x)
        rec, kl = self._terms(x)
        loss = (rec + kl).mean()
        return {"loss": loss, "rec": rec.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Single-sample ELBO per image in nats (analytic KL), (B,); x binary."""
        rec, kl = self._terms(x, generator)
        return -(rec + kl)

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, k: int = 1000, chunk: int = 250,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """IWAE lower bound on log p(x) with k importance samples, per image in nats, (B,).

        x must be binary (the data set binarized once); ``chunk`` bounds memory (B * chunk decodes).
        """
        if not torch.all((x == 0) | (x == 1)):
            raise ValueError("log_prob of a Bernoulli VAE needs binary images; binarize the data first")
        b = x.shape[0]
        mu, logvar = self.encode(x)
        mu, logvar = mu.float(), logvar.float()
        std = (0.5 * logvar).exp()
        log_w = []
        for start in range(0, k, chunk):
            kc = min(chunk, k - start)
            eps = torch.randn((kc, *mu.shape), generator=generator, device=mu.device)   # (kc, B, latent)
            z = mu + std * eps
            logits = self.decoder_logits(z.flatten(0, 1)).float()                        # (kc*B, C, H, W)
            xs = x.unsqueeze(0).expand(kc, *x.shape).flatten(0, 1)
            log_px_z = -F.binary_cross_entropy_with_logits(logits, xs, reduction="none").flatten(1).sum(1)
            log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)                                 # (kc, B)
            log_qz = -0.5 * (eps.square() + LOG_2PI + logvar).sum(-1)
            log_w.append(log_px_z.view(kc, b) + log_pz - log_qz)
        log_w = torch.cat(log_w, 0)                                                       # (k, B)
        return torch.logsumexp(log_w, 0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.device)
        return self.decode(z).float()
