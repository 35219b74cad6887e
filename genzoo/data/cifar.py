"""cifar10: the official python-version archive cifar-10-python.tar.gz, read into memory, checked
against its published MD5 (or trusted by the user, by name) and only then decoded: its six
batches are read from the tar.gz without extracting it and unpickled by the restricted unpickler.
"local": $GENZOO_CIFAR10_ARCHIVE or <root>/downloads/; "download": the official site or
$GENZOO_CIFAR10_MIRROR."""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np

from genzoo.errors import GenzooError

from .download import _DOWNLOAD_TIMEOUT_S, _MAX_FILE_BYTES, _download, _mirrors
from .registry import BuildContext, _first_source, _Splits
from .safe_pickle import _restricted_unpickle


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
            f"with another MD5 is used only with trust_archive=PATH, `genzoo data prepare cifar10 "
            f"--trust-archive PATH`)")
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
                          f"{CIFAR10_ARCHIVE}); it was not opened. If you trust this file, pass "
                          f"trust_archive={path} (`genzoo data prepare cifar10 --trust-archive {path}`).")
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
