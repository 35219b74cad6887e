"""memory:HASH, images handed to ``genzoo.train`` as tensors or a torch Dataset instead of by name.

A run records its data set by name (config.json's "data") and every command loads it again by that
name (``load_split``), so images held in memory get a name of their own: ``memory:`` and the first 16
hex digits of the sha256 of their arrays (shape, uint8 images, int64 labels). The same tensors always
get the same name, so a resume from Python finds its run's data, and other tensors never do.

Where the arrays live:
  - in this process, once ``register_arrays`` (or ``name_for``) has seen them;
  - in the run folder of every run trained on them, as ``data.npz`` (uint8 images (N, C, H, W) and
    int64 labels (N,), -1 when unlabelled), written with config.json (``record_in_run``). Reading a
    run's config.json (``checkpoint.read_config``, which every command that opens a run calls) makes
    that file known under the name (``remember_run``), so ``genzoo eval``, ``sample``, ``report`` and
    ``--resume`` work in a new process, on another machine and after the folder is moved or copied;
    ``RUN/best/`` finds the file of the run it sits in. The file is read with ``allow_pickle=False``
    and checked against the name's hash before its arrays are used.

The test split is held out as a folder's is: a seeded 10% of the images (rounded half up, at least
one); the rest is the train split. The images count as 8-bit data (never binarized), their classes
are the labels 0..max (0 classes when unlabelled).
"""
from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from genzoo.errors import GenzooError

from .download import _save_npz_atomic
from .folder import FOLDER_SPLIT_SEED, FOLDER_TEST_PERCENT
from .registry import DatasetInfo, ImageData

MEMORY_PREFIX = "memory"
DATA_FILE = "data.npz"          # the arrays of an in-memory data set, in the folder of a run trained on it
_NAME = re.compile(rf"{MEMORY_PREFIX}:([0-9a-f]{{16}})")
_ARRAYS: dict[str, tuple[np.ndarray, np.ndarray]] = {}    # name -> (images, labels), all N of them
_FILES: dict[str, Path] = {}                               # name -> a data.npz said to hold them, unread


def is_memory_name(name) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def name_for(data, what: str = "data") -> str:
    """Register in-memory images and return their name. ``data``: images (N, C, H, W), uint8 or float in
    [0, 1]; a pair (images, labels) with int labels (N,) in [0, num_classes); or a torch Dataset whose
    items are images (C, H, W) or (image, label) pairs. ``what`` names the argument in errors."""
    images, labels = _as_arrays(data, what)
    return register_arrays(images, labels, what)


def register_arrays(images: np.ndarray, labels: np.ndarray | None = None, what: str = "data") -> str:
    """Register uint8 (N, C, H, W) images and int64 (N,) labels (None or -1: unlabelled); returns the name."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise GenzooError(f"{what}: images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}.")
    labels = np.full(len(images), -1, np.int64) if labels is None else np.asarray(labels)
    if labels.shape != images.shape[:1] or labels.dtype.kind not in "iu":
        raise GenzooError(f"{what}: labels must be integers of shape ({len(images)},), got {labels.dtype} "
                          f"{labels.shape}.")
    labels = labels.astype(np.int64)
    if len(images) < 2:
        raise GenzooError(f"{what}: {len(images)} image(s); in-memory data needs at least 2 (10%, at least one, "
                          "is held out as the test split).")
    if not ((labels == -1).all() or labels.min() >= 0):
        raise GenzooError(f"{what}: labels must be class indices 0, 1, ... (or all -1 for unlabelled images), "
                          f"got values from {labels.min()} to {labels.max()}.")
    images = np.ascontiguousarray(images)
    name = f"{MEMORY_PREFIX}:{_digest(images, labels)}"
    _ARRAYS.setdefault(name, (images, labels))
    return name


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(repr((images.shape, str(images.dtype), str(labels.dtype))).encode())
    h.update(images.tobytes())
    h.update(labels.tobytes())
    return h.hexdigest()[:16]


def _as_arrays(data, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images (N, C, H, W), int64 labels (N,) or None) from tensors, a pair, or a Dataset."""
    if isinstance(data, torch.utils.data.Dataset):
        items = [data[i] for i in range(len(data))]
        pairs = all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items)
        if items and not pairs and any(isinstance(it, (tuple, list)) for it in items):
            raise GenzooError(f"{what}: a Dataset must yield images (C, H, W) or (image, label) pairs, every "
                              "item alike.")
        images = _to_uint8(torch.stack([torch.as_tensor(it[0] if pairs else it) for it in items]) if items
                           else torch.empty(0), what)
        labels = torch.as_tensor([int(it[1]) for it in items]) if pairs else None
        return images, labels.numpy() if labels is not None else None
    labels = None
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise GenzooError(f"{what}: a tuple must be (images, labels), got {len(data)} items.")
        data, labels = data
        labels = torch.as_tensor(labels)
        if labels.is_floating_point():
            raise GenzooError(f"{what}: labels must be integers, got {labels.dtype}.")
        labels = labels.cpu().numpy()
    if not isinstance(data, (torch.Tensor, np.ndarray)):
        raise GenzooError(f"{what} must be a data set name, folder:PATH, a tensor of images (N, C, H, W), "
                          f"a pair (images, labels) or a torch Dataset; got {type(data).__name__}.")
    return _to_uint8(torch.as_tensor(data), what), labels


def _to_uint8(x: torch.Tensor, what: str) -> np.ndarray:
    """uint8 as it is; float in [0, 1] rounded to k / 255."""
    if x.ndim != 4:
        raise GenzooError(f"{what}: images must be shaped (N, C, H, W), got {tuple(x.shape)}.")
    if x.dtype == torch.uint8:
        return x.cpu().numpy()
    if not x.is_floating_point():
        raise GenzooError(f"{what}: images must be uint8 or float in [0, 1], got {x.dtype}.")
    x = x.detach().cpu().double()
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise GenzooError(f"{what}: float images must lie in [0, 1], got values from {x.min().item():.4g} to "
                          f"{x.max().item():.4g}.")
    return torch.round(x * 255).to(torch.uint8).numpy()


def remember_run(name: str, run_dir: str | Path) -> None:
    """Note where a run keeps the arrays of ``name`` (its data.npz, or that of the run holding best/)."""
    if not is_memory_name(name) or name in _ARRAYS or name in _FILES:
        return
    run_dir = Path(run_dir)
    for path in (run_dir / DATA_FILE, run_dir.parent / DATA_FILE):
        if path.is_file():
            _FILES[name] = path
            return


def record_in_run(name: str, run_dir: str | Path) -> None:
    """Write the arrays of an in-memory data set into ``run_dir`` (other names need nothing)."""
    if not is_memory_name(name):
        return
    path = Path(run_dir) / DATA_FILE
    if _FILES.get(name) == path:
        return
    images, labels = _arrays(name)
    _save_npz_atomic(path, images=images, labels=labels)


def _arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in _ARRAYS:
        path = _FILES.get(name)
        if path is None:
            raise GenzooError(f"{name} is an in-memory data set that this process has not seen: pass the same "
                              f"images to genzoo.train again, or open the run trained on it (its folder keeps "
                              f"them in {DATA_FILE}).")
        try:
            with np.load(path, allow_pickle=False) as npz:
                images, labels = npz["images"], npz["labels"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise GenzooError(f"{path} is unreadable ({e}); it held the images of {name}.") from None
        if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype != np.int64 \
                or f"{MEMORY_PREFIX}:{_digest(images, labels)}" != name:
            raise GenzooError(f"{path} does not hold the images of {name} (their hash differs): the file was "
                              "changed or replaced.")
        _ARRAYS[name] = (images, labels)
    return _ARRAYS[name]


def memory_info(name: str) -> DatasetInfo:
    images, labels = _arrays(name)
    k = 0 if (labels == -1).all() else int(labels.max()) + 1
    c, h, w = images.shape[1:]

    def build(ctx):
        raise GenzooError(f"{name} is held in memory (or in a run's {DATA_FILE}); it is not prepared.")
    return DatasetInfo(name=name, description=f"{len(images)} in-memory images, {c}x{h}x{w}, {k or 'no'} "
                       "classes", shape=(c, h, w), num_classes=k, binarized=False, build=build)


def memory_split(name: str, split: str) -> ImageData:
    """One split of an in-memory data set: the seeded held-out 10% ("test") or the rest ("train")."""
    images, labels = _arrays(name)
    n = len(images)
    n_test = max(1, (n * FOLDER_TEST_PERCENT + 50) // 100)
    perm = np.random.default_rng(FOLDER_SPLIT_SEED).permutation(n)
    idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    info = memory_info(name)
    return ImageData(images=torch.from_numpy(np.ascontiguousarray(images[idx])),
                     labels=torch.from_numpy(labels[idx]), num_classes=info.num_classes, name=name, split=split)
