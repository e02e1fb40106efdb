"""Greedy coreset orders kept on disk between fits (Tune trials): keyed by a digest of the exact bits of the patch
features (computed where they live: no copy of the bank to the host) plus seed and projection, so a hit is always
the same computation; a longer order serves every smaller bank as its prefix. Each entry carries a checksum, checked
when read; writers hold the entry's lock (hdmap/file_lock.py) and write under a name of their own."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from hdmap.atomic_files import unique_partial
from hdmap.file_lock import locked
from hdmap.models.greedy_order import GreedyOrder

DIGEST_ROWS = 4096  # rows hashed at a time (4096 x D int64 of scratch)
_MIX = (-7046029254386353131, -4658895280553007687, 7640891576956012809, -2919222853218017547)  # odd 64-bit constants


def _index_coefficients(n: int, salt: int, device) -> torch.Tensor:
    """A fixed pseudo-random odd int64 per index (a multiply-xorshift mix of the index): the same on every device."""
    x = torch.arange(n, dtype=torch.int64, device=device) * _MIX[salt] + _MIX[(salt + 1) % 4]
    x = x ^ (x >> 31)
    x = x * _MIX[(salt + 2) % 4]
    return (x ^ (x >> 29)) | 1


def bits_digest(features: torch.Tensor) -> tuple[int, int]:
    """Two 64-bit linear hashes, sum over i, j of bits[i, j] * r_i * c_j (mod 2^64), of the float32 bit patterns,
    computed on the features' device in blocks of rows; only the two sums reach the host. Any one changed value
    changes both (odd coefficients)."""
    x = features.detach().float().contiguous()
    bits = x.view(torch.int32)
    n, d = bits.shape
    sums = []
    for salt in (0, 2):
        columns, rows = _index_coefficients(d, salt, x.device), _index_coefficients(n, salt + 1, x.device)
        total = torch.zeros((), dtype=torch.int64, device=x.device)
        for start in range(0, n, DIGEST_ROWS):
            block = bits[start:start + DIGEST_ROWS].long()
            total += ((block * columns).sum(dim=1) * rows[start:start + DIGEST_ROWS]).sum()
        sums.append(total)
    first, second = torch.stack(sums).tolist()  # the one host sync
    return first, second


def features_digest(features: torch.Tensor, seed: int, projection_dim: int | None) -> str:
    digest = hashlib.sha1(f"v4|{tuple(features.shape)}|{seed}|{projection_dim}|{bits_digest(features)}".encode())
    return digest.hexdigest()[:24]


def state_checksum(state: dict) -> str:
    digest = hashlib.sha1(state["order"].numpy().tobytes())
    digest.update(state["nearest"].numpy().tobytes())
    return digest.hexdigest()


def read_checked(path: Path, n_features: int) -> dict | None:
    """A stored greedy order whose checksum and size match; else None, with a warning naming the file (the
    order is then recomputed, never used)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "checksum" not in state:
            raise ValueError("no checksum: written by an older hdmap")
        if state["checksum"] != state_checksum(state) or len(state["nearest"]) != n_features:
            raise ValueError("checksum or size mismatch")
        return state
    except Exception as error:  # noqa: BLE001 - any unreadable store entry is recomputed
        warnings.warn(f"coreset store entry {path} is corrupt or incomplete ({type(error).__name__}: {error}): "
                      f"recomputing it")
        return None


class CoresetStore:
    """Get-or-compute greedy orders under `root` (one small .pt per feature set)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = self.misses = 0

    def coreset(self, features: torch.Tensor, size: int, seed: int, projection_dim: int | None,
                progress=None) -> torch.Tensor:
        key = features_digest(features, seed, projection_dim)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.pt"
        with locked(self.root / f"{key}.lock"):  # parallel trials on the same features compute once
            order = GreedyOrder(features, seed, projection_dim)
            if path.exists():
                stored = read_checked(path, len(features))
                if stored is not None:
                    order.restore(stored)
            if len(order.order) >= size:
                self.hits += 1
                return order.extend(size)
            self.misses += 1
            if progress is not None:
                progress.advance(len(order.order))  # picks read from the store
            chosen = order.extend(size, progress)
            partial = unique_partial(path)
            state = order.state()
            state["checksum"] = state_checksum(state)
            try:
                torch.save(state, partial)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            return chosen

    def union(self, features: torch.Tensor, seed: int, projection_dim: int | None, union_size: int, chunk: int,
              compute) -> torch.Tensor:
        """The chunk stage's picks of composable greedy (`compute()` on a miss), kept beside the union's greedy
        order: a trial on the same features skips the chunk stage too."""
        key = f"{features_digest(features, seed, projection_dim)}-union{union_size}-chunk{chunk}"
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.pt"
        with locked(self.root / f"{key}.lock"):
            if path.exists():
                try:
                    stored = torch.load(path, map_location="cpu", weights_only=True)
                    union = stored["union"]
                    if stored["checksum"] == hashlib.sha1(union.numpy().tobytes()).hexdigest() and \
                            len(union) and int(union.max()) < len(features):
                        self.hits += 1
                        return union.to(features.device)
                    raise ValueError("checksum or range mismatch")
                except Exception as error:  # noqa: BLE001 - any unreadable entry is recomputed
                    warnings.warn(f"coreset store entry {path} is corrupt ({type(error).__name__}: {error}): "
                                  f"recomputing it")
            self.misses += 1
            union = compute()
            cpu = union.cpu()
            partial = unique_partial(path)
            try:
                torch.save({"union": cpu, "checksum": hashlib.sha1(cpu.numpy().tobytes()).hexdigest()}, partial)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            return union

