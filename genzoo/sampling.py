"""The one seeded, batched sampler: training's grids and coverage checks, evaluation, report, the
applications and bench all draw their images through ``sample_batches`` (docs/python-api.md).

One ``torch.Generator`` seeded with ``seed`` (on the model's device) feeds every batch in turn, so
the same seed gives the same images whatever the caller; class-conditional callers pass labels,
usually ``balanced_labels`` (each class in turn). Sampling options are checked against the
model's declaration (``GenerativeModel.capabilities.sample_options``) before the first batch.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from .models.base import check_sample_options


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """(n,) int64 labels cycling through the classes, 0, 1, ..., num_classes - 1, 0, 1, ..."""
    return torch.arange(n) % num_classes


@torch.no_grad()
def sample_batches(model, n: int, seed: int, batch_size: int = 500, labels: torch.Tensor | None = None,
                   progress: bool = True, on_batch=None, options: dict | None = None) -> None:
    """Draw n samples in batches from one generator seeded with ``seed``, handing each batch to
    ``on_batch(images (m, C, H, W) float in [0, 1] on the CPU, labels (m,) or None)``."""
    options = check_sample_options(model, options)
    g = torch.Generator(device=model.device).manual_seed(seed)
    for start in tqdm(range(0, n, batch_size), desc="sampling", disable=not progress, leave=False):
        m = min(batch_size, n - start)
        lab = labels[start:start + m].to(model.device) if labels is not None else None
        kw = {"labels": lab} if lab is not None else {}
        x = model.sample(m, generator=g, **kw, **options)
        on_batch(x.cpu(), lab)


def sample(model, n: int, seed: int = 0, batch_size: int = 500, labels: torch.Tensor | None = None,
           options: dict | None = None, progress: bool = False) -> torch.Tensor:
    """n samples (n, C, H, W) float in [0, 1] on the CPU, drawn as ``sample_batches`` draws them."""
    chunks = []
    sample_batches(model, n, seed, batch_size, labels, progress, lambda x, _: chunks.append(x), options)
    return torch.cat(chunks)
