"""Leaf layers shared by model files. Only small, generic pieces live here (STYLE.md #8)."""
from __future__ import annotations

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
