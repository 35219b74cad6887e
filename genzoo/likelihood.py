"""Test-set likelihood in the units of METRICS.md: nats per image on dyn-binarized data
(the test set binarized once with seed 0)."""
from __future__ import annotations

import torch
from tqdm import tqdm


def binarize_fixed(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float {0, 1}, one Bernoulli draw with p = k/255 from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(images.float() / 255, generator=g)


@torch.no_grad()
def mean_bound(model, images: torch.Tensor, estimator: str = "elbo", k: int = 1, batch_size: int = 500,
               seed: int = 0, progress: bool = True) -> float:
    """Mean log-likelihood bound in nats over ``images`` (uint8), ELBO or IWAE with k samples.

    Binary-data models get the seed-0 binarized set; the latent noise is drawn from a seeded generator.
    """
    x_all = binarize_fixed(images, seed) if getattr(model.config, "binarize", False) else images.float() / 255
    g = torch.Generator(device=model.device).manual_seed(seed + 1)
    total = 0.0
    for start in tqdm(range(0, len(x_all), batch_size), desc=f"{estimator} k={k}", disable=not progress,
                      leave=False):
        x = x_all[start:start + batch_size].to(model.device)
        bound = model.elbo(x, generator=g) if estimator == "elbo" else model.log_prob(x, k=k, generator=g)
        total += bound.sum().item()
    return total / len(x_all)
