"""The registry of named data sets: ``DATASETS``, ``SOURCES``, ``SPLITS`` and ``BINARIZED``, the
records ``ImageData``, ``BuildContext`` and ``DatasetInfo``, ``register_dataset``, and the checks
every builder's arrays pass (``_check_arrays``), plus ``_first_source``, which the builders with
several sources use to try them in turn."""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genzoo.errors import GenzooError


# name -> one-line description, and the values ``prepare(name, source=...)`` accepts, per data set;
# both are filled by ``register_dataset`` (the built-in sets are registered in __init__.py)
DATASETS: dict[str, str] = {}
SOURCES: dict[str, tuple[str, ...]] = {}
SPLITS = ("train", "test")
# data sets whose likelihoods are reported on binarized images (docs/metrics.md: dyn-binarized MNIST);
# models with a `binarize` option get it set from this, and the rest are scored as 8-bit data
BINARIZED = frozenset({"mnist", "digits"})
# names ``folder:PATH`` (folder.py) start with this; no registered set may take it
FOLDER_PREFIX = "folder"


@dataclass
class ImageData:
    """One split of a data set, held in memory as uint8.

    ``images`` is uint8 (N, C, H, W), contiguous; ``labels`` is int64 (N,), in [0, num_classes),
    or all -1 when the set is unlabelled (num_classes 0). Divide images by 255 for the [0, 1]
    floats the models take.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    split: str
    classes: tuple[str, ...] = ()      # class names, where known

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        self.images = self.images.contiguous()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class BuildContext:
    """What ``prepare`` hands a data set's builder."""

    source: str                        # one of the set's sources; "auto" tries them in turn
    scratch: Path                      # a temporary folder on the cache's disk, removed afterwards
    root: Path                         # the cache folder
    progress: bool                     # progress bars and notes on stderr
    trust_archive: Path | None = None  # an archive the user trusts by name (sets with ``archive``)
    provenance: dict = field(default_factory=dict)   # filled by the builder; kept as source.json


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set: what ``genzoo data list`` shows and how ``prepare`` builds it.

    ``build(ctx)`` returns {"train": (images, labels), "test": (images, labels)}: images uint8
    (N, *shape), labels int64 (N,) in [0, num_classes), or all -1 when ``num_classes`` is 0
    (unlabelled). It raises GenzooError, saying what to do, when no source can be read.
    """

    name: str
    description: str
    shape: tuple[int, int, int]            # (C, H, W) of one image
    num_classes: int                       # 0: unlabelled
    binarized: bool                        # likelihoods on binarized images (docs/metrics.md)
    build: Callable[[BuildContext], dict]
    sources: tuple[str, ...] = ("auto",)   # the values of prepare(source=...); "auto" first
    archive: str | None = None             # the file a user may place by hand or trust by name
    classes: tuple[str, ...] = ()          # class names, where known


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> None:
    """Add a named data set (for plug-ins and tests); every command then knows it by name."""
    global BINARIZED
    if info.name == FOLDER_PREFIX or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", info.name):
        raise ValueError(f"data set names are lower-case letters, digits, '_', '.', '-' and not "
                         f"{FOLDER_PREFIX!r}; got {info.name!r}")
    if len(info.shape) != 3 or info.num_classes < 0 or not info.sources or info.sources[0] != "auto":
        raise ValueError(f"{info.name}: shape must be (C, H, W), num_classes >= 0 and the first "
                         f"source 'auto'")
    _REGISTRY[info.name] = info
    DATASETS[info.name] = info.description
    SOURCES[info.name] = info.sources
    BINARIZED = frozenset(n for n, i in _REGISTRY.items() if i.binarized)


# ---------------------------------------------------------------------------------------------
# building the arrays

# split -> (images uint8 (N, C, H, W), labels int64 (N,))
_Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _info(name: str) -> DatasetInfo:
    if name not in _REGISTRY:
        raise GenzooError(f"Unknown data set {name!r}; valid names are {', '.join(DATASETS)}, or "
                          f"folder:PATH for a folder of images. Run `genzoo data prepare NAME` "
                          f"with one of them.")
    return _REGISTRY[name]


def _first_source(name: str, attempts: Mapping[str, Callable[[], _Splits]], source: str,
                  hint: str, progress: bool) -> _Splits:
    # tries the sources in order (only ``source`` unless "auto"); returns the first that yields
    # valid arrays, else one error with every source's reason and ``hint`` (what to do)
    if source != "auto":
        attempts = {source: attempts[source]}
    failures = []
    for i, (src, attempt) in enumerate(attempts.items()):
        try:
            return _checked(attempt(), _REGISTRY[name])
        except GenzooError as e:
            failures.append(f"source {src!r}: {e}")
            if progress and i + 1 < len(attempts):
                print(f"genzoo: {name} source {src!r} failed, trying the next one", file=sys.stderr)
    raise GenzooError(f"Could not prepare {name}: " + " | ".join(failures) +
                      f" To fix this, {hint}, then run `genzoo data prepare {name}`.")


def _checked(splits: _Splits, info: DatasetInfo) -> _Splits:
    for split in SPLITS:
        images, labels = splits[split]
        _check_arrays(images, labels, info, f"{info.name} {split}")
    return splits


def _check_arrays(images: np.ndarray, labels: np.ndarray, info: DatasetInfo, what: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != tuple(info.shape):
        raise GenzooError(f"{what}: images must be uint8 (N, {', '.join(map(str, info.shape))}), "
                          f"got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
        raise GenzooError(f"{what}: labels must be int64 ({images.shape[0]},), got "
                          f"{labels.dtype} {labels.shape}")
    if info.num_classes == 0:
        if labels.size and (labels != -1).any():
            raise GenzooError(f"{what}: an unlabelled set's labels must all be -1")
    elif labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise GenzooError(f"{what}: labels outside 0..{info.num_classes - 1}")
