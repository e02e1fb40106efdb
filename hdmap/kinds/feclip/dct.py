"""Orthonormal DCT-II as matrices: exactly invertible (the inverse is the transpose)."""
from __future__ import annotations

import math

import torch


def dct_matrix(n: int, dtype=torch.float32) -> torch.Tensor:
    """C with C[k, i] = a_k cos(pi (2i + 1) k / 2n); C @ C.T = I."""
    i = torch.arange(n, dtype=torch.float64)
    k = i[:, None]
    matrix = torch.cos(math.pi * (2 * i[None, :] + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


def dct2(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """2-D DCT over the last two dims (each of size n): C X C^T."""
    return matrix @ x @ matrix.T


def idct2(y: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of `dct2`: C^T Y C."""
    return matrix.T @ y @ matrix


def band_mask(n: int, band: str | list) -> torch.Tensor:
    """(n, n) 0/1 mask over DCT coefficients (u, v). Bands split u + v in [0, 2n - 2] into thirds:
    `low`, `mid`, `high`; `all` keeps everything; a nested list is taken as an explicit mask."""
    if isinstance(band, (list, tuple)):
        mask = torch.tensor(band, dtype=torch.float32)
        if mask.shape != (n, n):
            raise ValueError(f"explicit band mask must be {n}x{n}, got {tuple(mask.shape)}")
        return mask
    total = torch.arange(n)[:, None] + torch.arange(n)[None, :]
    top = 2 * n - 2
    bands = {"all": total >= 0, "low": total * 3 <= top, "mid": (total * 3 > top) & (total * 3 <= 2 * top),
             "high": total * 3 > 2 * top}
    if band not in bands:
        raise ValueError(f"band must be one of {sorted(bands)} or an explicit {n}x{n} mask, got {band!r}")
    return bands[band].float()
