"""Leaf layers shared by model files. Only small, generic pieces live here (STYLE.md #8)."""
from __future__ import annotations

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
