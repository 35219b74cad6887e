"""Fetching and writing files for genzoo.data: downloads of http, https and file URLs (checked
against a size limit, their MD5 returned), mirror lists from environment variables, the SHA-256
of a file, and the atomic write of a prepared .npz file."""
from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genzoo.errors import GenzooError

_DOWNLOAD_TIMEOUT_S = 60
_MAX_FILE_BYTES = 256 << 20      # no source file, compressed or not, is near this; stops runaways
_CHUNK_BYTES = 1 << 20


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


def _mirrors(env_var: str, default: Sequence[str]) -> list[str]:
    # env var: one base URL or several separated by commas or spaces
    env = os.environ.get(env_var, "")
    return env.replace(",", " ").split() if env.strip() else list(default)


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
