"""Greedy k-center selection on a seeded random projection of the patch features, resumable (one order serves
every bank size)."""
from __future__ import annotations

import torch

from hdmap.progress import StageProgress


def projection(dim_in: int, projection_dim: int | None, seed: int) -> torch.Tensor | None:
    """The seeded random projection (dim_in, projection_dim) of the distances; None keeps the full dimension."""
    if not projection_dim or projection_dim >= dim_in:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(dim_in, projection_dim, generator=generator) / projection_dim ** 0.5


def project(features: torch.Tensor, seed: int, projection_dim: int | None) -> torch.Tensor:
    x = features.detach().float()
    matrix = projection(x.shape[1], projection_dim, seed)
    return x if matrix is None else x @ matrix.to(x.device)


class GreedyOrder:
    """Greedy k-center selection that can be resumed: the first m picks of a longer run are exactly the picks of
    a run of length m, so one order serves every bank size (a cache keeps it between trials).

    Distances are squared L2 on the seeded projection, |x|^2 - 2 x.c + |c|^2, one matrix-vector product and one
    running minimum per pick, on the features' device; a pick never waits on the device (no host sync). A member's
    running distance is set below any distance (-1), so no member is picked twice, even among identical patches."""

    def __init__(self, features: torch.Tensor, seed: int = 0, projection_dim: int | None = 128,
                 projected: bool = False):
        x = features.detach().float() if projected else project(features, seed, projection_dim)
        self.x, self.norms = x.contiguous(), (x * x).sum(dim=1)
        generator = torch.Generator().manual_seed(seed)
        self.order = torch.randint(len(x), (1,), generator=generator).to(x.device)
        self.nearest = self._distances(self.order[:1]).index_fill_(0, self.order[:1], -1.0)

    def _distances(self, member: torch.Tensor) -> torch.Tensor:
        """Squared distances of every patch to `member` (a 1-element index tensor)."""
        centre = self.x.index_select(0, member)[0]
        return torch.addmv(self.norms, self.x, centre, alpha=-2).add_(self.norms.index_select(0, member)).clamp_min_(0)

    def extend(self, size: int, progress: StageProgress | None = None) -> torch.Tensor:
        """The first `size` picks (computing the missing ones)."""
        size = min(size, len(self.x))
        done = len(self.order)
        if size > done:
            order = torch.empty(size, dtype=torch.long, device=self.x.device)
            order[:done] = self.order
            nearest = self.nearest
            for i in range(done, size):
                pick = torch.argmax(nearest).view(1)
                order[i:i + 1] = pick
                torch.minimum(nearest, self._distances(pick), out=nearest)
                nearest.index_fill_(0, pick, -1.0)  # a member is never picked again (all-equal patches: distance 0)
                if progress is not None:
                    progress.advance()
            self.order, self.nearest = order, nearest
        return self.order[:size]

    def state(self) -> dict:
        return {"order": self.order.cpu(), "nearest": self.nearest.cpu()}

    def restore(self, state: dict) -> "GreedyOrder":
        self.order, self.nearest = state["order"].to(self.x.device), state["nearest"].to(self.x.device)
        return self
