"""Horizontal-context descriptor: each patch feature concatenated with the mean of its 2k+1 row neighbours.

A damaged tooth is a faint horizontal band; averaging along the row integrates its evidence.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def horizontal_mean(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over the 2k+1 horizontal neighbours of every token of (B, C, h, w); edges average what exists."""
    if k == 0:
        return grid
    kernel = (1, 2 * k + 1)
    summed = F.avg_pool2d(grid, kernel, stride=1, padding=(0, k), count_include_pad=False)
    return summed


def add_horizontal_context(grid: torch.Tensor, ks: tuple[int, ...] | int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C * (1 + number of k > 0), h, w): the feature, then its row means per k."""
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    if any(k < 0 for k in ks):
        raise ValueError(f"context k must be >= 0, got {ks}")
    parts = [grid] + [horizontal_mean(grid, k) for k in ks if k > 0]
    return torch.cat(parts, dim=1)
