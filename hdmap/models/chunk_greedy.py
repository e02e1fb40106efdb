"""Composable greedy's chunk stage: greedy k-center within each chunk, chunk by chunk or all chunks in step.

Chunk by chunk (`GreedyOrder` per chunk) keeps one cache-sized chunk hot for all its picks: the faster way on a
CPU. In step (`StepGreedy`) every chunk takes its next pick in the same step: the argmax, running minimum, member
marking and centre gathers run once per step for all chunks, and only the matrix-vector product stays one call per
chunk (the same BLAS call on the same chunk as chunk by chunk, so the picks are bit-for-bit the same). On a GPU,
where a pick is bound by kernel launches rather than by memory, that cuts the kernel launches per pick from 9 to about
1 + 8 / chunks.
"""
from __future__ import annotations

import math

import torch

from hdmap.models.greedy_order import GreedyOrder
from hdmap.progress import StageProgress


def first_pick(length: int, seed: int) -> int:
    """GreedyOrder's seeded first member of a set of `length` patches."""
    return int(torch.randint(length, (1,), generator=torch.Generator().manual_seed(seed))[0])


class StepGreedy:
    """Greedy k-center in several chunks at once: chunk i, the rows `parts[i]` of `x` (projected patches), padded
    into one (C, m, d) tensor; padding rows are never picked (their running distance is -inf)."""

    def __init__(self, x: torch.Tensor, parts: list[torch.Tensor], seed: int):
        count, longest, device = len(parts), max(len(part) for part in parts), x.device
        self.x = x.new_zeros((count, longest, x.shape[1]))
        self.norms = x.new_zeros((count, longest))
        for i, part in enumerate(parts):
            self.x[i, :len(part)] = x[part]
            self.norms[i, :len(part)] = (self.x[i, :len(part)] * self.x[i, :len(part)]).sum(dim=1)
        self.offsets = torch.arange(count, device=device) * longest  # flat index of each chunk's first row
        self.distances = torch.empty((count, longest), device=device)
        self.centres = x.new_empty((count, x.shape[1]))
        self.per_chunk = [(self.norms[i], self.x[i], self.centres[i], self.distances[i]) for i in range(count)]
        picks = torch.tensor([first_pick(len(part), seed) for part in parts], device=device)
        flat = self._distances(picks)
        self.nearest = self.distances.clone()
        for i, part in enumerate(parts):
            self.nearest[i, len(part):] = -math.inf
        self.nearest.view(-1).index_fill_(0, flat, -1.0)  # a member is never picked again
        self.order = [picks]

    def _distances(self, picks: torch.Tensor) -> torch.Tensor:
        """Squared distances of every patch to its chunk's pick into `self.distances`, computed as GreedyOrder
        computes them (the same calls per chunk); returns the picks' flat indices."""
        flat = self.offsets + picks
        torch.index_select(self.x.view(-1, self.x.shape[2]), 0, flat, out=self.centres)
        for norms, x, centre, distances in self.per_chunk:  # views made once: one call per chunk and step
            torch.addmv(norms, x, centre, alpha=-2, out=distances)
        self.distances.add_(self.norms.view(-1).index_select(0, flat).unsqueeze(1)).clamp_min_(0)
        return flat

    def extend(self, steps: int, progress: StageProgress | None = None) -> torch.Tensor:
        """(C, steps) picks: each chunk's first `steps` greedy members (indices into its chunk)."""
        while len(self.order) < steps:
            picks = torch.argmax(self.nearest, dim=1)
            self.order.append(picks)
            flat = self._distances(picks)
            torch.minimum(self.nearest, self.distances, out=self.nearest)
            self.nearest.view(-1).index_fill_(0, flat, -1.0)
            if progress is not None:
                progress.advance(len(picks))
        return torch.stack(self.order[:steps], dim=1)


def chunk_picks(x: torch.Tensor, parts: list[torch.Tensor], shares: list[int], seed: int,
                progress: StageProgress | None = None, in_step: bool | None = None) -> torch.Tensor:
    """The sorted union of every chunk's first `share` greedy picks (indices into `x`, projected patches).
    `in_step`: all chunks in step (default on a GPU) or chunk by chunk (default on a CPU); the picks are the same."""
    if in_step is None:
        in_step = x.device.type != "cpu"
    if in_step:
        order = StepGreedy(x, parts, seed).extend(max(shares), progress)
        picked = [part[order[i, :share]] for i, (part, share) in enumerate(zip(parts, shares))]
    else:
        picked = [part[GreedyOrder(x[part], seed, projected=True).extend(share, progress)]
                  for part, share in zip(parts, shares)]
    return torch.sort(torch.cat(picked)).values
