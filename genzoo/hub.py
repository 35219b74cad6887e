"""Where a model comes from: a run folder, a model of genzoo's zoo by name, or an exported folder on the
Hugging Face Hub (``hf://owner/name`` or ``hf://owner/name@revision``), and the check that its files
are the ones its manifest lists.

An exported model folder (``genzoo export``, and every zoo model) holds config.json, the EMA weights
as ema.safetensors, a model card (card.md, card.json) and manifest.json, the sha256 and size of each
of those files. ``locate`` turns any of the three references into a local folder and checks the
manifest where there is one: a missing, extra-short or altered file is an error that names it, before
anything is read. Nothing here is unpickled; the Hub is reached only for an ``hf://`` reference, and
only with huggingface_hub installed (``pip install "genzoo[hub]"``).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .errors import GenzooError

MANIFEST = "manifest.json"
ZOO_DIR = Path(__file__).parent / "zoo"            # genzoo/zoo/NAME/: the models that come with genzoo
HF_PREFIX = "hf://"
_HF_REF = re.compile(r"^hf://([\w.-]+/[\w.-]+)(?:@([\w./-]+))?$")
_VERIFIED: dict[tuple, bool] = {}                  # (folder, manifest mtime, file sizes and mtimes) -> checked


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def zoo_names() -> list[str]:
    """The names of the models that come with genzoo (folders of genzoo/zoo/ with a manifest)."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / MANIFEST).is_file()) if ZOO_DIR.is_dir() else []


def is_reference(ref) -> bool:
    """True when ``ref`` names a model by zoo name or hf:// rather than by a folder path."""
    ref = str(ref)
    return ref.startswith(HF_PREFIX) or (ref in zoo_names() and not (Path(ref) / "config.json").is_file())


def locate(ref: str | Path) -> Path:
    """The local folder of ``ref`` (a run folder, a zoo name, or hf://owner/name[@revision]), its manifest
    checked where it has one."""
    text = str(ref)
    if text.startswith(HF_PREFIX):
        folder = _from_hub(text)
    elif text in zoo_names() and not (Path(text) / "config.json").is_file():     # a local run folder wins
        folder = ZOO_DIR / text
    else:
        folder = Path(ref)
    if (folder / MANIFEST).is_file():
        verify(folder)
    return folder


def verify(folder: Path) -> None:
    """Check every file manifest.json lists: present, of the listed size, with the listed sha256."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GenzooError(f"{folder / MANIFEST} cannot be read as a manifest ({e}); the model is not loaded.") \
            from None
    key = (str(folder.resolve()), *(_stamp(folder / name) for name in sorted(files)), _stamp(folder / MANIFEST))
    if _VERIFIED.get(key):
        return
    for name, want in sorted(files.items()):
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise GenzooError(f"{folder / MANIFEST} lists {name!r}, which is not a file of the folder.")
        if not path.is_file():
            raise GenzooError(f"{path} is missing: {folder.name}'s manifest lists it. Download or export the model "
                              "again.")
        if path.stat().st_size != want["bytes"] or sha256_file(path) != want["sha256"]:
            raise GenzooError(f"{path} is not the file {folder.name}'s manifest lists (sha256 {want['sha256'][:12]}..., "
                              f"{want['bytes']} bytes): it was altered or damaged. Download or export the model again.")
    _VERIFIED[key] = True


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (path.name, None)
    return (path.name, st.st_size, st.st_mtime_ns)


def write_manifest(folder: Path, names: list[str]) -> dict:
    """manifest.json for the files ``names`` of ``folder``: each one's sha256 and size."""
    folder = Path(folder)
    files = {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
             for name in sorted(names)}
    manifest = {"format": "genzoo-model/1", "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _from_hub(ref: str) -> Path:
    """Download (or reuse the cached copy of) an exported model folder from the Hugging Face Hub."""
    m = _HF_REF.match(ref)
    if m is None:
        raise GenzooError(f"{ref!r} is not a Hub reference: write hf://owner/name or hf://owner/name@revision.")
    repo_id, revision = m.group(1), m.group(2)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise GenzooError(f"loading {ref} needs huggingface_hub: pip install \"genzoo[hub]\".") from None
    try:
        path = snapshot_download(repo_id=repo_id, revision=revision,
                                 allow_patterns=["config.json", "ema.safetensors", "card.md", "card.json", MANIFEST])
    except Exception as e:           # the Hub's own errors: not found, offline, gated
        raise GenzooError(f"cannot fetch {ref} from the Hugging Face Hub: {e}") from None
    folder = Path(path)
    if not (folder / MANIFEST).is_file():
        raise GenzooError(f"{ref} has no {MANIFEST}: genzoo loads Hub models exported with `genzoo export`, whose "
                          "files it can check.")
    return folder
