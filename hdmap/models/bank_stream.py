"""One memory bank's reference patches taken as they arrive, so a fit's memory is bounded by a window, not by the
train maps.

A bank whose patches fit in the window (`window_patches`) is held whole and fitted as before (the same bank,
bit for bit). A larger one under composable greedy is built window by window: each full window is shuffled
(seeded), cut into cache-sized chunks, and each chunk keeps its share of the union (UNION_FACTOR x the bank size,
shared in proportion to all the bank's patches); the window is then dropped. When the last window is in, exact
greedy over the union of the kept picks chooses the bank, as composable greedy does over its chunks' picks.
Exact greedy (`coreset_method: greedy`) needs every patch at once and holds them whole.
"""
from __future__ import annotations

import math

import torch

from hdmap.models.chunk_greedy import chunk_picks
from hdmap.models.coreset import CHUNK_PATCHES, UNION_FACTOR, chunks_of, coreset_size, project
from hdmap.models.greedy_order import GreedyOrder
from hdmap.progress import StageProgress
from hdmap.spread import active, node_id, task_device


def window_picks(window: torch.Tensor, seed: int, projection_dim: int | None, n_total: int, size: int) -> torch.Tensor:
    """Composable greedy's chunk stage on one window of a bank of `n_total` patches and `size` members: the sorted
    indices of the window's picks, its chunks' shares of the union (UNION_FACTOR x size) in proportion to all the
    bank's patches. A pure function of its inputs: where it runs does not change the picks."""
    x = project(window, seed, projection_dim)
    parts = chunks_of(len(window), seed, window.device, CHUNK_PATCHES)
    union_size = min(n_total, UNION_FACTOR * size)
    shares = [max(1, math.ceil(union_size * len(part) / n_total)) for part in parts]
    return chunk_picks(x, parts, shares, seed)


def window_task(window: torch.Tensor, seed: int, projection_dim: int | None, n_total: int, size: int) -> tuple:
    """A Ray task: ((the window's picks, their patches), the node that computed them)."""
    picks = window_picks(window.to(task_device()), seed, projection_dim, n_total, size).cpu()
    return (picks, window[picks].clone()), node_id()


class BankStream:
    """Patches (k, D) of one bank in arrival order (`add`), then `finish(bank)` fits the MemoryBank `bank`."""

    def __init__(self, n_patches: int, like: torch.Tensor, fit: dict, window_patches: int, tagged: bool = False):
        """`n_patches`: all the bank will receive; `like`: a tensor of the patches' width, dtype and device; `fit`:
        MemoryBank.fit's keywords (coreset_ratio, seed, projection_dim, store, bank_size, method); `tagged`: the
        members keep their patches' tags (a mixed bank's condition codes)."""
        self.n, self.fit_args, self.tagged = n_patches, fit, tagged
        self.size = coreset_size(n_patches, fit["coreset_ratio"], fit["bank_size"])
        self.windowed = (fit["method"] == "composable" and UNION_FACTOR * self.size < n_patches
                         and n_patches > window_patches)
        rows = min(n_patches, window_patches) if self.windowed else n_patches
        self.buffer = like.new_empty((rows, like.shape[-1]))
        self.tags = torch.empty(rows, dtype=torch.long, device=like.device)
        self.filled = self.seen = self.windows = 0
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (picked patches, their tags) per window
        self.pending: list = []  # (Ray task, the window's tags) of windows spread over a cluster, in order

    def add(self, patches: torch.Tensor, tags: torch.Tensor) -> None:
        """The next patches (k, D) with one tag (condition code) each."""
        if self.seen + len(patches) > self.n:
            raise RuntimeError(f"a bank planned for {self.n} patches received {self.seen + len(patches)}")
        start = 0
        while start < len(patches):
            take = min(len(patches) - start, len(self.buffer) - self.filled)
            self.buffer[self.filled:self.filled + take] = patches[start:start + take]
            self.tags[self.filled:self.filled + take] = tags[start:start + take]
            self.filled, self.seen, start = self.filled + take, self.seen + take, start + take
            if self.windowed and self.filled == len(self.buffer):
                self._keep_window_picks()

    def _keep_window_picks(self) -> None:
        """The chunk stage of composable greedy over the window (here, or as a Ray task when the fit is spread); its
        picks (full width) are kept, the window reused."""
        seed, count, spread = self.fit_args["seed"] + self.windows, self.filled, active()
        window = self.buffer[:count]
        if spread is not None:
            self.pending.append((spread.submit("coreset windows", window_task, window.cpu(), seed,
                                               self.fit_args["projection_dim"], self.n, self.size),
                                 self.tags[:count].clone()))
            if len(self.pending) >= spread.max_in_flight:
                self._collect(spread, 1)
        else:
            with StageProgress(f"coreset window {self.windows + 1}", count, "patches") as progress:
                picks = window_picks(window, seed, self.fit_args["projection_dim"], self.n, self.size)
                progress.advance(count)
            self.kept.append((window[picks].clone(), self.tags[picks].clone()))
        self.filled, self.windows = 0, self.windows + 1

    def _collect(self, spread, count: int | None = None) -> None:
        """Take the results of the oldest `count` (all) window tasks, in window order."""
        while self.pending and (count is None or count > 0):
            ref, tags = self.pending.pop(0)
            picks, patches = spread.result("coreset windows", ref)
            self.kept.append((patches.to(self.buffer.device), tags[picks.to(tags.device)]))
            count = None if count is None else count - 1

    def finish(self, bank) -> None:
        """Fit `bank` (a MemoryBank) on everything received: whole, as MemoryBank.fit; windowed, greedy over the
        union of the windows' picks."""
        if self.seen != self.n:
            raise RuntimeError(f"a bank planned for {self.n} patches received {self.seen}")
        if not self.windowed:
            bank.fit(self.buffer, tags=self.tags if self.tagged else None, **self.fit_args)
        else:
            if self.filled:
                self._keep_window_picks()
            if self.pending:
                self._collect(active())
            union = torch.cat([patches for patches, _ in self.kept])
            tags = torch.cat([tags for _, tags in self.kept])
            self.kept = []
            self.buffer, self.tags = self.buffer.new_empty((0, self.buffer.shape[1])), self.tags[:0].clone()  # freed
            store, seed, projection_dim = self.fit_args["store"], self.fit_args["seed"], self.fit_args["projection_dim"]
            with StageProgress("coreset (union of windows)", self.size, "picks") as progress:
                if store is None:
                    chosen = GreedyOrder(union, seed, projection_dim).extend(self.size, progress)
                else:
                    chosen = store.coreset(union, self.size, seed, projection_dim, progress)
            bank.keep(union[chosen], tags[chosen] if self.tagged else None)
