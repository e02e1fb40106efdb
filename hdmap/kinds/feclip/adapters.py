"""Frequency adapters on a (B, H, W, D) patch-token grid.

FFE: non-overlapping P x P windows, 2-D DCT per window, band mask, Linear(D, D) + GELU across channels, band
mask again (so the output lies in the band), inverse DCT.
LFS: Q x Q sliding window around every token, 2-D DCT, one statistic of the band's coefficients per channel
(`mean` as the paper's text says, `abs_mean`, or F3-Net's `log_energy`), then a conv (1x1 default) + GELU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdmap.kinds.feclip.dct import band_mask, dct2, dct_matrix, idct2

LFS_STATS = ("mean", "abs_mean", "log_energy")


class FFE(nn.Module):
    """Frequency feature enhancement over non-overlapping windows (the grid is zero-padded to a multiple of P).
    Only the band's DCT coefficients enter the linear layer and only they are written back."""

    def __init__(self, dim: int, window: int = 3, band: str | list = "all"):
        super().__init__()
        self.window = window
        self.linear = nn.Linear(dim, dim)
        self.register_buffer("dct", dct_matrix(window), persistent=False)
        self.register_buffer("mask", band_mask(window, band), persistent=False)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        b, h, w, d = grid.shape
        p = self.window
        pad_h, pad_w = (-h) % p, (-w) % p
        x = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))
        nh, nw = x.shape[1] // p, x.shape[2] // p
        windows = x.view(b, nh, p, nw, p, d).permute(0, 1, 3, 5, 2, 4)  # (b, nh, nw, d, p, p)
        spectrum = dct2(windows, self.dct) * self.mask
        spectrum = F.gelu(self.linear(spectrum.permute(0, 1, 2, 4, 5, 3)))  # channels last for the linear
        spectrum = spectrum.permute(0, 1, 2, 5, 3, 4) * self.mask  # back to (b, nh, nw, d, p, p), in the band
        restored = idct2(spectrum, self.dct)
        out = restored.permute(0, 1, 4, 2, 5, 3).reshape(b, nh * p, nw * p, d)
        return out[:, :h, :w]


def band_statistic(coefficients: torch.Tensor, mask: torch.Tensor, stat: str) -> torch.Tensor:
    """One number per (..., q, q) window from the coefficients where mask = 1."""
    count = mask.sum().clamp_min(1)
    if stat == "mean":  # signed mean: a fixed linear filter of the window (the paper's text)
        return (coefficients * mask).sum(dim=(-1, -2)) / count
    if stat == "abs_mean":
        return (coefficients.abs() * mask).sum(dim=(-1, -2)) / count
    if stat == "log_energy":  # F3-Net's LFS: log of the band's energy
        return torch.log1p((coefficients.square() * mask).sum(dim=(-1, -2)) / count)
    raise ValueError(f"lfs_stat must be one of {LFS_STATS}, got {stat!r}")


class LFS(nn.Module):
    """Local frequency statistics: per token, a statistic of the band's DCT coefficients of its Q x Q
    neighbourhood, then conv + GELU."""

    def __init__(self, dim: int, window: int = 3, band: str | list = "all", kernel: int = 1, stat: str = "mean"):
        super().__init__()
        if stat not in LFS_STATS:
            raise ValueError(f"lfs_stat must be one of {LFS_STATS}, got {stat!r}")
        self.window, self.stat = window, stat
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2)
        self.register_buffer("dct", dct_matrix(window), persistent=False)
        self.register_buffer("mask", band_mask(window, band), persistent=False)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        b, h, w, d = grid.shape
        q = self.window
        x = grid.permute(0, 3, 1, 2)  # (b, d, h, w)
        patches = F.unfold(x, q, padding=q // 2).view(b, d, q, q, h * w).permute(0, 4, 1, 2, 3)  # (b, hw, d, q, q)
        response = band_statistic(dct2(patches, self.dct), self.mask, self.stat)  # (b, hw, d)
        response = response.view(b, h, w, d).permute(0, 3, 1, 2)
        return F.gelu(self.conv(response)).permute(0, 2, 3, 1)


class FrequencyAdapter(nn.Module):
    """f' = lambda * (FFE(f) + LFS(f)) + (1 - lambda) * f."""

    def __init__(self, dim: int, ffe_window: int = 3, lfs_window: int = 3, band: str | list = "all",
                 lfs_kernel: int = 1, mix: float = 0.1, lfs_stat: str = "mean"):
        super().__init__()
        self.ffe = FFE(dim, ffe_window, band)
        self.lfs = LFS(dim, lfs_window, band, lfs_kernel, lfs_stat)
        self.mix = mix

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        if self.mix == 0:
            return grid
        return self.mix * (self.ffe(grid) + self.lfs(grid)) + (1 - self.mix) * grid
