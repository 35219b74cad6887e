"""Preparing and loading data sets by name: ``data_root``, ``prepare`` (a set converted once into
``<root>/<name>/{train,test}.npz``), ``load_split``, ``dataset_info``, ``balanced_subset``, and
the names runs and caches record (``check_name``, ``cache_tag``, ``short_name``). Registered
names go through the registry (registry.py); ``folder:PATH`` names through folder.py."""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from genzoo.errors import GenzooError

from .download import _save_npz_atomic
from .folder import _folder_arrays, _folder_key, _scan_folder, parse_folder_name
from .memory import MEMORY_PREFIX, is_memory_name, memory_info, memory_split
from .registry import (FOLDER_PREFIX, SPLITS, _REGISTRY, BuildContext, DatasetInfo, ImageData,
                       _check_arrays, _checked, _info, _Splits)


def dataset_info(name: str) -> DatasetInfo:
    """The registered data set ``name``; for ``folder:PATH``, that folder's shape and classes
    (its files are listed, not decoded). Raises GenzooError for an unknown name or a bad folder."""
    if is_memory_name(name):
        return memory_info(name)
    spec = parse_folder_name(name)
    if spec is None:
        return _info(name)
    _, classes = _scan_folder(spec.path)
    c, s = spec.channels, spec.image_size
    return DatasetInfo(name=spec.name, description=f"the images in {spec.path}, {s}x{s}x{c}",
                       shape=(c, s, s), num_classes=len(classes), binarized=False,
                       build=lambda ctx: {split: _folder_arrays(spec, ctx.root, True,
                                                                ctx.progress)[0][split]
                                          for split in SPLITS},
                       sources=("auto",), classes=tuple(classes))


def data_root() -> Path:
    """The cache folder: $GENZOO_DATA if set, else ~/.cache/genzoo/data (created if missing)."""
    env = os.environ.get("GENZOO_DATA")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "genzoo" / "data"
    root.mkdir(parents=True, exist_ok=True)
    return root


def prepare(name: str, *, source: str = "auto", root: Path | None = None,
            progress: bool = True, trust_archive: str | Path | None = None) -> Path:
    """Convert data set ``name`` once into ``root/name/{train,test}.npz`` and return that folder.

    Returns at once if both files already exist. ``source`` picks where the data comes from
    (see ``SOURCES``); "auto" tries each source in turn. ``trust_archive`` is a local archive
    the user vouches for (data sets with an archive, e.g. cifar10): it is used even when its
    checksum is not the published one, recorded as unverified in ``source.json``, and still
    decoded with the restricted unpickler. For ``folder:PATH`` the folder is converted into its
    cache (``root/folders/KEY.npz``) and that file is returned. Raises ``GenzooError`` for an
    unknown name or source, or when no source can be read.
    """
    root = Path(root) if root is not None else data_root()
    spec = parse_folder_name(name)
    if spec is not None:
        if source != "auto" or trust_archive is not None:
            raise GenzooError(f"{spec.name} is read from its folder: it takes no trust_archive or source other "
                              f"than 'auto'.")
        return _folder_arrays(spec, root, True, progress)[1]
    info = _info(name)
    if source not in info.sources:
        raise GenzooError(f"Unknown source {source!r} for data set {name!r}; valid sources are "
                          f"{', '.join(info.sources)}. Run `genzoo data prepare {name}` to use "
                          f"the default (auto).")
    if trust_archive is not None:
        if info.archive is None:
            raise GenzooError(f"{name} is not built from an archive; trust_archive applies to "
                              f"{', '.join(n for n, i in _REGISTRY.items() if i.archive)}.")
        trust_archive = Path(trust_archive).expanduser()
        if not trust_archive.is_file():
            raise GenzooError(f"trust_archive={trust_archive}: no such file.")
    folder = root / name
    if all((folder / f"{split}.npz").is_file() for split in SPLITS):
        if trust_archive is not None and progress:
            print(f"genzoo: {name} is already prepared in {folder}; delete that folder to prepare "
                  f"it again from {trust_archive}.", file=sys.stderr)
        return folder

    root.mkdir(parents=True, exist_ok=True)
    # raw downloads go to a scratch folder inside root (same disk as the result), removed after
    with tempfile.TemporaryDirectory(prefix=f".tmp-{name}-", dir=root) as scratch:
        ctx = BuildContext(source=source, scratch=Path(scratch), root=root, progress=progress,
                           trust_archive=trust_archive)
        splits = _build(name, source, Path(scratch), progress, ctx=ctx)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        images, labels = splits[split]
        _save_npz_atomic(folder / f"{split}.npz", images=images, labels=labels)
    if ctx.provenance:
        (folder / "source.json").write_text(json.dumps(ctx.provenance, indent=2) + "\n")
    return folder


def load_split(name: str, split: str = "train", *, root: Path | None = None,
               prepare_if_missing: bool = True) -> ImageData:
    """Load one split of a data set, preparing it first if needed and allowed.

    ``name`` is a registered name (``DATASETS``) or ``folder:PATH`` (see ``folder_name``), e.g.
    ``load_split("folder:~/photos", "test")``: the held-out 10% of a folder's images.
    """
    if split not in SPLITS:
        raise GenzooError(f"Unknown split {split!r}; valid splits are {', '.join(SPLITS)}.")
    if is_memory_name(name):
        return memory_split(name, split)
    root = Path(root) if root is not None else data_root()
    spec = parse_folder_name(name)
    if spec is not None:
        arrays = _folder_arrays(spec, root, prepare_if_missing, True)[0]
        images, labels = arrays[split]
        classes = tuple(arrays["classes"])
        return ImageData(images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                         num_classes=len(classes), name=spec.name, split=split, classes=classes)
    info = _info(name)
    path = root / name / f"{split}.npz"
    if not path.is_file():
        if not prepare_if_missing:
            raise GenzooError(f"Data set {name!r} is not prepared in {root}. Run "
                              f"`genzoo data prepare {name}` first (set GENZOO_DATA to choose "
                              f"the folder).")
        prepare(name, root=root)
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
        _check_arrays(images, labels, info, str(path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, GenzooError) as e:
        raise GenzooError(f"The prepared file {path} is unreadable ({e}). Delete the folder "
                          f"{root / name} and run `genzoo data prepare {name}` again.") from e
    return ImageData(images=torch.from_numpy(np.ascontiguousarray(images)),
                     labels=torch.from_numpy(labels), num_classes=info.num_classes,
                     name=name, split=split, classes=info.classes)


SUBSET_SEED = 0                  # balanced_subset: the same images for every run seed, so runs compare on them


def balanced_subset(labels: torch.Tensor, n: int, num_classes: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """Sorted int64 indices of a seeded class-balanced subset of n of the images with these ``labels`` (N,).

    Each class gets n // num_classes images, and n % num_classes classes (chosen by the seed) one more; within a
    class the images are a seeded random draw. n = N is the whole split (MNIST's 60,000 are not balanced).
    The training-subset option (``--set train_subset=N``) and ``genzoo augment`` both take their images here.
    """
    total = len(labels)
    if n == total:
        return torch.arange(total)
    if not 0 < n < total:
        raise GenzooError(f"a training subset of {n} images needs 1 to {total} (the train split's size).")
    if num_classes < 2:
        raise GenzooError("a class-balanced training subset needs a labelled data set.")
    if n < num_classes:
        raise GenzooError(f"a class-balanced subset of {n} images cannot hold all {num_classes} classes.")
    g = torch.Generator().manual_seed(seed)
    quota = torch.full((num_classes,), n // num_classes)
    quota[torch.randperm(num_classes, generator=g)[:n % num_classes]] += 1
    picked = []
    for c in range(num_classes):
        members = (labels == c).nonzero().flatten()
        if len(members) < quota[c]:
            raise GenzooError(f"a class-balanced subset of {n} images needs {int(quota[c])} of class {c}; the "
                              f"split has {len(members)}.")
        picked.append(members[torch.randperm(len(members), generator=g)[:int(quota[c])]])
    return torch.cat(picked).sort().values


def check_name(name: str) -> str:
    """``name`` as runs record it: a registered name unchanged, a folder in its canonical form
    (``folder_name``), an in-memory set's ``memory:HASH`` unchanged. Raises GenzooError listing the valid
    names for anything else."""
    if is_memory_name(name):
        return name
    spec = parse_folder_name(name)
    if spec is not None:
        return spec.name
    return _info(name).name


def cache_tag(name: str) -> str:
    """A file-name-safe tag for caches derived from data set ``name`` (feature statistics): the
    name itself, or for a folder ``folder-`` and a hash of its file list, sizes, mtimes and
    options, so that a changed folder gets new statistics; ``memory-HASH`` for in-memory images."""
    if is_memory_name(name):
        return name.replace(":", "-")
    spec = parse_folder_name(name)
    if spec is None:
        return _info(name).name
    files, _ = _scan_folder(spec.path)
    return f"{FOLDER_PREFIX}-{_folder_key(spec, files)[:16]}"


def short_name(name: str) -> str:
    """A short file-name-safe label: the registered name, ``folder-<folder's name>``, or ``memory-HASH8``."""
    if is_memory_name(name):
        return f"{MEMORY_PREFIX}-{name.partition(':')[2][:8]}"
    spec = parse_folder_name(name)
    if spec is None:
        return name
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.path.name).strip("-.") or "root"
    return f"{FOLDER_PREFIX}-{base}"


def _build(name: str, source: str, scratch: Path, progress: bool, *,
           ctx: BuildContext | None = None) -> _Splits:
    # the set's builder, its arrays checked against the registered shape and classes
    info = _info(name)
    if ctx is None:
        ctx = BuildContext(source=source, scratch=scratch, root=scratch.parent, progress=progress)
    return _checked(info.build(ctx), info)
