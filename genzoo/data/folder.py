"""folder:PATH, any folder of PNG, JPEG or WebP images as a data set: the names (``FolderSpec``,
``parse_folder_name``, ``folder_name``), the scan of the folder (one subfolder per class, or
unlabelled), the conversion of its images to uint8 arrays with a seeded held-out test split, and
the cache of those arrays under <root>/folders/, keyed by the file list, sizes and mtimes."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genzoo.errors import GenzooError

from .download import _save_npz_atomic
from .registry import FOLDER_PREFIX, SPLITS


# folder:PATH
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FOLDER_IMAGE_SIZE = 32           # defaults of folder_name(); `genzoo train --image-size --channels`
FOLDER_CHANNELS = 3
FOLDER_TEST_PERCENT = 10         # held out for evaluation (rounded half up), at least 1 image
FOLDER_SPLIT_SEED = 0
_FOLDER_CACHE_VERSION = 1        # bump when the conversion changes, so old caches are not reused
_FOLDER_NAMED_SKIPS = 5          # unreadable files named in the one warning


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
