"""What the page accepts from a visitor: image files, decoded with bounds before any pixel is read, and masks drawn
on the page. Nothing here imports gradio.

An upload is refused, with a message that says why, when it is larger than ``MAX_UPLOAD_BYTES``, is not one of
``FORMATS`` (the decoder is chosen from that list only, whatever the file's name says), declares more than
``MAX_PIXELS`` pixels (read from its header, before decoding: a decompression bomb costs nothing), has more than
``MAX_FRAMES`` frames, or cannot be decoded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import GenzooError
from ..images import center_crop_resize

MAX_UPLOAD_BYTES = 5 * 1024 * 1024           # also the page's upload limit (gradio's max_file_size)
MAX_PIXELS = 4096 * 4096                     # the decoder's limit; PIL's own is 89 million
MAX_FRAMES = 64                              # an animated GIF or WebP: its first frame is used
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def limit_decoding() -> None:
    """Bound every decode in this process (the page's own and gradio's): Pillow refuses pictures beyond
    ``MAX_PIXELS`` and its decompression-bomb warning becomes an error. Called when the page starts."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _open_checked(path: Path) -> Image.Image:
    """``path`` opened (header only) by one of FORMATS' decoders, its size and frames within bounds."""
    img = Image.open(path, formats=FORMATS)
    if img.width * img.height > MAX_PIXELS:
        raise GenzooError(f"the image is {img.width}x{img.height}: more than the {MAX_PIXELS:,} pixels the page "
                          "decodes.")
    if getattr(img, "n_frames", 1) > MAX_FRAMES:
        raise GenzooError(f"the image has {img.n_frames} frames; the page reads files of at most {MAX_FRAMES}.")
    return img


def read_upload(path, channels: int, size: int) -> torch.Tensor:
    """An uploaded image file as (1, channels, size, size) float in [0, 1] (centre-cropped and resized as every
    genzoo command reads an image), or a GenzooError naming what is wrong with it."""
    if path is None:
        raise GenzooError("no image uploaded: choose a PNG, JPEG, WebP, BMP or GIF file.")
    path = Path(path)
    if not path.is_file():
        raise GenzooError("the uploaded file is gone; upload it again.")
    n_bytes = path.stat().st_size
    if n_bytes > MAX_UPLOAD_BYTES:
        raise GenzooError(f"the file has {n_bytes / 2**20:.1f} MB; the page takes images of at most "
                          f"{MAX_UPLOAD_BYTES / 2**20:g} MB.")
    try:
        with _open_checked(path) as img:
            arr = center_crop_resize(img, size, channels)          # decodes the first frame
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise GenzooError(f"the image declares more than the {MAX_PIXELS:,} pixels the page decodes.") from None
    except (OSError, ValueError, SyntaxError):             # Pillow's errors for a truncated or foreign file
        raise GenzooError(f"the uploaded file cannot be read as an image: it is damaged or not one of "
                          f"{', '.join(FORMATS)}.") from None
    return torch.from_numpy(np.ascontiguousarray(arr).copy()).float().div(255).unsqueeze(0)


def drawn_mask(layers, size: int) -> torch.Tensor:
    """The known mask (1, 1, size, size) bool, True = known, from the strokes of an image editor: ``layers`` is a
    list of RGBA arrays (H, W, 4) at any size; a pixel of the model is unknown where strokes cover more than a
    quarter of its area. An empty drawing is an error: there is nothing to fill in."""
    cover = None
    for layer in layers or []:
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[2] != 4 or arr.shape[0] * arr.shape[1] > MAX_PIXELS:
            raise GenzooError("the drawn mask is not an RGBA picture the page can read.")
        alpha = arr[..., 3] > 0
        cover = alpha if cover is None or cover.shape != alpha.shape else cover | alpha
    if cover is None or not cover.any():
        raise GenzooError("nothing is drawn: paint over the pixels to fill in, or choose a preset mask.")
    small = Image.fromarray(cover.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
    unknown = np.asarray(small) > 64
    if not unknown.any():
        raise GenzooError("the drawn strokes cover no whole pixel of the model's image: paint a larger area.")
    return torch.from_numpy(~unknown).view(1, 1, size, size)
