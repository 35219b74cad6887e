"""patches: 32x32 colour patches of scikit-learn's two sample photographs, labelled by photo and
split into train and test by photo region, so that no test patch shares a pixel with a train
patch; needs no network."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genzoo.errors import GenzooError

from .registry import SPLITS, BuildContext, _Splits


# patches: tiles of the two scikit-learn sample photos (427 x 640 each)
_PATCH_SIZE = 32
_PATCH_TILE = 64                 # each photo is cut into a grid of disjoint 64 x 64 tiles (6 x 10)
_PATCH_TEST_TILES = 6            # tiles per photo held out for the test split (seeded)
_PATCHES_PER_TILE = 50           # random 32 x 32 crops inside each tile
_PATCH_SEED = 0


# ---------------------------------------------------------------------------------------------
# patches of scikit-learn's two sample photographs

def _patches(ctx: BuildContext | None = None) -> _Splits:
    # Each photo is cut into a grid of disjoint 64 x 64 tiles; _PATCH_TEST_TILES tiles per photo,
    # drawn with a seeded generator, are the test region. Every patch is a random 32 x 32 crop
    # inside one tile, so no test patch shares a pixel with a train patch. Label = source photo.
    from sklearn.datasets import load_sample_images  # slow import, only needed here

    bunch = load_sample_images()
    photos = sorted(zip(bunch.filenames, bunch.images), key=lambda p: Path(p[0]).name)
    rng = np.random.default_rng(_PATCH_SEED)
    t, p, n = _PATCH_TILE, _PATCH_SIZE, _PATCHES_PER_TILE
    parts: dict[str, tuple[list, list]] = {split: ([], []) for split in SPLITS}
    for label, (filename, photo) in enumerate(photos):
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
            raise GenzooError(f"{filename} is not an RGB photo ({photo.dtype} {photo.shape}).")
        rows, cols = photo.shape[0] // t, photo.shape[1] // t
        test_tiles = set(rng.choice(rows * cols, _PATCH_TEST_TILES, replace=False).tolist())
        for tile_index in range(rows * cols):
            r, c = divmod(tile_index, cols)
            tile = photo[r * t:(r + 1) * t, c * t:(c + 1) * t]           # (64, 64, 3)
            ys, xs = rng.integers(0, t - p + 1, size=(2, n))
            crops = np.stack([tile[y:y + p, x:x + p] for y, x in zip(ys, xs)])   # (n, 32, 32, 3)
            images, labels = parts["test" if tile_index in test_tiles else "train"]
            images.append(crops.transpose(0, 3, 1, 2))
            labels.append(np.full(n, label, dtype=np.int64))
    return {split: (np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))
            for split, (images, labels) in parts.items()}
