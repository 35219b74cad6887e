"""Leaf layers shared by model files. Only small, generic pieces live here."""
from __future__ import annotations

import math

import torch
from torch import nn


def conv_down(c_in: int, c_out: int, norm: bool = False, act: nn.Module | None = None) -> nn.Sequential:
    """4x4 stride-2 convolution: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""
    layers = [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(act if act is not None else nn.SiLU())
    return nn.Sequential(*layers)


def conv_up(c_in: int, c_out: int, norm: bool = False, act: nn.Module | None = None) -> nn.Sequential:
    """4x4 stride-2 transposed convolution: (B, c_in, H, W) -> (B, c_out, 2H, 2W)."""
    layers = [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(act if act is not None else nn.SiLU())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Pre-activation 3x3 residual block at constant resolution and width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class SelfAttention2d(nn.Module):
    """Self-attention over the H*W positions of a feature map (SAGAN, Zhang et al. 2019, eqs. 1-3):
    y = x + gamma * o, with gamma a learned scalar that starts at 0, so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.qk = max(1, channels // 8)
        self.query = nn.Conv2d(channels, self.qk, 1)
        self.key = nn.Conv2d(channels, self.qk, 1)
        self.value = nn.Conv2d(channels, max(1, channels // 2), 1)
        self.out = nn.Conv2d(max(1, channels // 2), channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)              # (B, HW, qk)
        k = self.key(x).flatten(2)                                # (B, qk, HW)
        v = self.value(x).flatten(2)                              # (B, C/2, HW)
        attn = torch.softmax(q @ k, dim=-1)                       # (B, HW, HW): row i attends over positions j
        o = (v @ attn.transpose(1, 2)).view(b, -1, h, w)          # (B, C/2, H, W)
        return x + self.gamma * self.out(o)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps (B,) (Vaswani et al. 2017, sec. 3.5; used by Ho et al. 2020):
    (B, dim), sines then cosines of t at dim/2 frequencies from 1 down to 1/max_period; float32, or float64
    for float64 t (a network run in float64 for an exact check)."""
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-torch.arange(half, device=t.device, dtype=dtype) * (math.log(max_period) / max(half - 1, 1)))
    args = t.to(dtype)[:, None] * freqs[None]                     # (B, dim/2)
    emb = torch.cat([args.sin(), args.cos()], 1)
    return nn.functional.pad(emb, (0, dim % 2))


class EmbResBlock(nn.Module):
    """Residual block that takes an embedding (the DDPM U-Net's block, Ho et al. 2020, after Wide ResNet):
    GroupNorm, SiLU, 3x3 conv, GroupNorm, then a per-channel scale and shift from the embedding
    (h (1 + scale) + shift, the adaptive group norm of Dhariwal & Nichol 2021), SiLU, dropout, 3x3 conv;
    a 1x1 conv on the skip path when the width changes. The embedding acts after the norm because a shift
    added before it is removed by the group means. The last conv starts at zero, so the block starts as its
    skip path. (B, c_in, H, W), (B, emb_dim) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out))
        self.out_norm = group_norm(c_out)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(c_out, c_out, 3, padding=1))
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb):
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)       # (B, c_out, 1, 1) each
        h = self.out_norm(self.in_layers(x)) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with at least 4 channels per group where possible and at most 32 groups."""
    return nn.GroupNorm(math.gcd(32, max(channels // 4, 1)), channels)


class MaskedConv2d(nn.Conv2d):
    """Convolution whose output at pixel (i, j) sees only the input before it in raster order (van den Oord
    et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.4). Only the kernel rows down to the centre are
    stored, so a (kh, kw) kernel holds (kh // 2 + 1, kw) weights, and the centre row keeps the columns up to
    the centre. At the centre, channels form ``groups`` contiguous colour groups (R -> G -> B; channel n of N
    is in group n * groups // N, so N need not divide): output group g sees input groups < g (mask "A", the
    first layer, so a value never sees itself) or <= g (mask "B", every later layer).

    ``forward(x)``: same-size output, (B, c_in, H, W) -> (B, c_out, H, W). ``forward(window, valid=True)``:
    no padding, so a (kh // 2 + 1, kw) input window gives the one output at its bottom centre (sampling)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int | tuple[int, int], mask_type: str, groups: int = 1):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0 or mask_type not in ("A", "B"):
            raise ValueError(f"MaskedConv2d needs odd kernel sizes and mask_type 'A' or 'B', got {kernel_size}, "
                             f"{mask_type!r}")
        super().__init__(c_in, c_out, (kh // 2 + 1, kw))
        g_in = torch.arange(c_in) * groups // c_in
        g_out = torch.arange(c_out) * groups // c_out
        centre = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
        m = torch.ones(c_out, c_in, kh // 2 + 1, kw)
        m[:, :, -1, kw // 2:] = 0                                 # right of the centre in its own row
        m[:, :, -1, kw // 2] = centre.float()                     # the centre: earlier colour groups only
        self.register_buffer("mask", m, persistent=False)
        self.pad = (kw // 2, kw // 2, kh // 2, 0)                 # left, right, top, bottom

    def forward(self, x: torch.Tensor, valid: bool = False) -> torch.Tensor:
        if not valid:
            x = nn.functional.pad(x, self.pad)
        return nn.functional.conv2d(x, self.weight * self.mask, self.bias)
