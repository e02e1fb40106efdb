"""Tap grids -> one patch-embedding grid: local pooling, upsampling to the finest tap, concat, horizontal context."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hdmap.features.context import add_horizontal_context


def patch_embedding(grids: list[torch.Tensor], local_pool: int = 3, context_ks: tuple[int, ...] = (0,),
                    pool_include_pad: bool = True) -> torch.Tensor:
    """(B, C_i, h_i, w_i) per tap -> (B, D, h, w) at the finest tap's resolution.

    `pool_include_pad` counts the zero padding in the local average, as PatchCore's reference code does.
    Features pass through fp16 (the cache's precision) so cached and freshly extracted features score alike.
    """
    grids = [g.to(torch.float16).float() for g in grids]
    target = max((g.shape[-2:] for g in grids), key=lambda s: s[0] * s[1])
    parts = []
    for grid in grids:
        if local_pool > 1:
            grid = F.avg_pool2d(grid, local_pool, stride=1, padding=local_pool // 2, count_include_pad=pool_include_pad)
        if grid.shape[-2:] != target:
            grid = F.interpolate(grid, size=target, mode="bilinear", align_corners=False)
        parts.append(grid)
    return add_horizontal_context(torch.cat(parts, dim=1), context_ks)


def flatten_patches(embedding: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B * h * w, D)."""
    return embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
