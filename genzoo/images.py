"""Turning image tensors in [0, 1] into files people look at (grids, strips, GIFs, folders, NPZ arrays),
and image files into tensors."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [0, 1] into one (rows*(H+pad)+pad, ..., C) uint8 array."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = arr[i]
    if scale > 1:
        grid = grid.repeat(scale, 0).repeat(scale, 1)
    return grid


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(make_grid(images, nrow=nrow, scale=scale)).save(path)
    return path


def save_images(images: torch.Tensor, out: str | Path, labels: torch.Tensor | None = None) -> Path:
    """Write samples by the output's kind: a .png grid, a .npz array (uint8 NHWC + labels), or a folder of PNGs."""
    out = Path(out)
    if out.suffix.lower() == ".png":
        return save_grid(images, out)
    if out.suffix.lower() == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"images": to_uint8(images)}
        if labels is not None:
            arrays["labels"] = labels.cpu().numpy()
        np.savez(out, **arrays)
        return out
    if out.suffix:
        raise ValueError(f"cannot write samples to {out}: use a .png grid, a .npz file or a folder")
    out.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(to_uint8(images)):
        _pil(arr).save(out / f"{i:05d}.png")
    return out


MAX_IMAGE_PIXELS = 50_000_000      # a larger picture is refused rather than decoded (decompression bombs)


def center_crop_resize(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """A PIL image -> (C, size, size) uint8: the largest centred square, resized with a box/bicubic filter."""
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != size:   # reduce first with a box filter (antialiasing), then the exact size
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()


def load_image(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """Read an image file (PNG, JPEG, WebP, ...) as (1, channels, size, size) float in [0, 1]; a clear ValueError
    for a missing, unreadable or oversized file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{path} is {img.width}x{img.height}: larger than genzoo reads")
            arr = center_crop_resize(img, size, channels)
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path} is not a readable image ({e})") from None
    return torch.from_numpy(np.ascontiguousarray(arr).copy()).float().div(255).unsqueeze(0)


def save_gif(frames: torch.Tensor, path: str | Path, scale: int = 4, duration_ms: int = 120) -> Path:
    """Write frames (T, C, H, W) in [0, 1] as a looping GIF that plays forth and back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(frames).repeat(scale, 1).repeat(scale, 2)
    pics = [_pil(a) for a in arr]
    pics = pics + pics[-2:0:-1]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=duration_ms, loop=0)
    return path


def shift_images(images: torch.Tensor, offsets: torch.Tensor, fill: float | None = None) -> torch.Tensor:
    """Translate each image of ``images`` (B, C, H, W) by its whole-pixel ``offsets`` (B, 2) (down, right); the
    pixels that enter repeat the nearest edge pixel, or are ``fill`` when given. Offset (0, 0) returns the image."""
    b, _, h, w = images.shape
    if offsets.shape != (b, 2):
        raise ValueError(f"offsets must be ({b}, 2), got {tuple(offsets.shape)}")
    offsets = offsets.to(images.device).long()
    rows = torch.arange(h, device=images.device) - offsets[:, :1]                       # (B, H): source row
    cols = torch.arange(w, device=images.device) - offsets[:, 1:]                       # (B, W): source column
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = images[batch, :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]   # (B, H, W, C)
    if fill is not None:
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
        out = torch.where(inside[..., None], out, out.new_tensor(fill))
    return out.permute(0, 3, 1, 2)                                                      # (B, C, H, W)
