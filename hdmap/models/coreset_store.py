"""Greedy coreset orders kept on disk between fits (Tune trials): keyed by the exact bytes of the patch
features plus seed and projection, so a hit is always the same computation; a longer order serves every
smaller coreset ratio as its prefix. Each entry carries a checksum, checked when read."""
from __future__ import annotations

import fcntl
import hashlib
import os
import warnings
from pathlib import Path

import torch

from hdmap.models.coreset import GreedyOrder


def features_digest(features: torch.Tensor, seed: int, projection_dim: int | None) -> str:
    digest = hashlib.sha1(f"v2|{tuple(features.shape)}|{seed}|{projection_dim}".encode())  # v2: addmv picks
    digest.update(features.detach().float().contiguous().cpu().numpy().tobytes())
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
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel trials on the same features compute once
            try:
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
                partial = path.with_suffix(".partial")
                state = order.state()
                state["checksum"] = state_checksum(state)
                torch.save(state, partial)
                os.replace(partial, path)
                return chosen
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
