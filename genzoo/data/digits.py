"""digits: scikit-learn's bundled 8x8 handwritten digits (0..16 rescaled to 0..255), split
1497 / 300 by a seeded permutation; needs no network."""
from __future__ import annotations

import numpy as np

from .registry import BuildContext, _Splits


def _digits(ctx: BuildContext | None = None) -> _Splits:
    from sklearn.datasets import load_digits  # slow import, only needed here

    bunch = load_digits()
    # (1797, 8, 8) float64 holding integers 0..16 -> 0..255 (np.rint: 127.5 -> 128)
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(labels))
    # keep the original order inside each split
    index = {"train": np.sort(perm[:1497]), "test": np.sort(perm[1497:])}
    return {split: (np.ascontiguousarray(images[i]), labels[i]) for split, i in index.items()}
