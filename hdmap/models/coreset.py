"""Which normal patches a memory bank keeps: greedy k-center selection, exact or composable.

`greedy`: exact greedy k-center over all N patches; each pick reads all N, so a bank of a fixed share of N costs
N^2. `composable` (the default): greedy within chunks of a seeded shuffle (each chunk small enough to stay in the
CPU cache), then exact greedy over the union of the chunks' picks (`UNION_FACTOR` x the bank size). Its picks read
a chunk or the union, never all N, so with a bank size given in patches (`bank_size`) its cost is the projection
(linear in N) plus a constant. Distances are squared L2 on a seeded random projection (`projection_dim`).
"""
from __future__ import annotations

import math

import torch

from hdmap.models.chunk_greedy import chunk_picks
from hdmap.models.greedy_order import GreedyOrder, project, projection  # noqa: F401 - projection: public here too
from hdmap.progress import StageProgress

CORESET_METHODS = ("greedy", "composable")
CHUNK_PATCHES = 8192  # a chunk's projected patches (8192 x 128 float32 = 4 MiB) stay in a CPU's cache
UNION_FACTOR = 4  # the chunks' picks together: this many times the bank size, greedy over them picks the bank


def coreset_size(n: int, ratio: float, bank_size: int | None = None) -> int:
    """Members of a bank of `n` patches: `bank_size` (at most n) when given, else round(ratio * n) (at least 1)."""
    if bank_size is not None:
        if bank_size < 1:
            raise ValueError(f"bank_size must be >= 1 patch or None, got {bank_size}")
        return min(int(bank_size), n)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset ratio must lie in (0, 1], got {ratio}")
    return max(1, int(round(ratio * n)))


def greedy_coreset(features: torch.Tensor, ratio: float, seed: int = 0, projection_dim: int | None = 128,
                   store=None, bank_size: int | None = None, method: str = "greedy") -> torch.Tensor:
    """Indices (on the features' device) of the bank's members among `features` (N, D): `bank_size` of them, or
    round(ratio * N). `store` (a CoresetStore) reuses and extends a greedy order computed for the same inputs."""
    if method not in CORESET_METHODS:
        raise ValueError(f"coreset method must be one of {CORESET_METHODS}, got {method!r}")
    n = features.shape[0]
    size = coreset_size(n, ratio, bank_size)
    if size >= n:
        return torch.arange(n, device=features.device)
    if method == "composable" and UNION_FACTOR * size < n:
        return composable_greedy(features, size, seed, projection_dim, store)
    with StageProgress("coreset (greedy)", size, "picks") as progress:
        if store is None:
            return GreedyOrder(features, seed, projection_dim).extend(size, progress)
        return store.coreset(features, size, seed, projection_dim, progress)


def chunks_of(n: int, seed: int, device, chunk: int = CHUNK_PATCHES) -> list[torch.Tensor]:
    """A seeded shuffle of range(n) cut into near-equal chunks of at most `chunk` indices."""
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    return list(torch.tensor_split(shuffled, math.ceil(n / chunk)))


def composable_greedy(features: torch.Tensor, size: int, seed: int = 0, projection_dim: int | None = 128,
                      store=None, union_factor: int = UNION_FACTOR, chunk: int = CHUNK_PATCHES) -> torch.Tensor:
    """`size` members: greedy within each chunk (its share of union_factor x size picks), then greedy over the union
    of those picks. `store` keeps both stages: the chunk picks (keyed by all the features) and the union's greedy
    order (keyed by the union's features)."""
    n = features.shape[0]
    union_size = min(n, union_factor * size)
    x = project(features, seed, projection_dim)
    parts = chunks_of(n, seed, features.device, chunk)
    shares = [max(1, math.ceil(union_size * len(part) / n)) for part in parts]
    with StageProgress("coreset (composable greedy)", sum(shares) + size, "picks") as progress:
        def chunk_stage() -> torch.Tensor:
            return chunk_picks(x, parts, shares, seed, progress)

        if store is None:
            union = chunk_stage()
        else:
            union = store.union(features, seed, projection_dim, union_size, chunk, chunk_stage)
        if store is None:
            chosen = GreedyOrder(features[union], seed, projection_dim).extend(size, progress)
        else:
            chosen = store.coreset(features[union], size, seed, projection_dim, progress)
    return union[chosen]
