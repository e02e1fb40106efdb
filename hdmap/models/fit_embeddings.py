"""The fit epoch's embeddings as they arrive: each reference map's patches go straight to its bank's stream
(bank_stream.py: held whole up to a window, then built window by window), the few calibration maps' embeddings are
kept for the calibration that follows the banks.

Within a bank, maps keep the order the epoch reads them in and a map's patches are flattened (h, w) row-major,
so a bank that fits in its window sees its patches exactly as before streaming (the same bank).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from hdmap.features.feature_datamodule import CALIBRATION, REFERENCE
from hdmap.models.bank_stream import BankStream

OpenStreams = Callable[[np.ndarray, int, torch.Tensor], dict[str, tuple[BankStream, np.ndarray]]]


class FitEmbeddings:
    """Filled batch by batch in the fit epoch's order; `roles` / `codes`: one per fit map, in that order.
    `open_streams(reference codes, patches per map, like)` -> {bank: (its stream, its references' positions among
    the references)} (PatchCoreModel.bank_streams), called at the first batch, when a map's patch grid is known."""

    def __init__(self, roles: np.ndarray, codes: np.ndarray, open_streams: OpenStreams):
        self.roles, self.codes = np.asarray(roles, np.int64), np.asarray(codes, np.int64)
        self.open_streams = open_streams
        self.streams: dict[str, BankStream] = {}
        self.bank_of = np.full(len(self.roles), -1)  # fit map -> index into self.names (-1: calibration)
        self.names: list[str] = []
        self.calibration_items = np.flatnonzero(self.roles == CALIBRATION)
        self.buffer: torch.Tensor | None = None  # (calibration maps, h, w, D)
        self.maps: torch.Tensor | None = None  # (calibration maps, H, W) raw maps (band fusion calibration)
        self.filled = 0

    def _open(self, embedding: torch.Tensor, maps: torch.Tensor) -> None:
        d, h, w = embedding.shape[1:]
        references = np.flatnonzero(self.roles == REFERENCE)
        opened = self.open_streams(self.codes[references], h * w, embedding.new_empty((0, d)))
        self.names = list(opened)
        for j, (name, (stream, positions)) in enumerate(opened.items()):
            self.streams[name] = stream
            self.bank_of[references[positions]] = j
        self.buffer = embedding.new_empty((len(self.calibration_items), h, w, d))
        self.maps = maps.new_empty((len(self.calibration_items), *maps.shape[1:]))

    def add(self, embedding: torch.Tensor, maps: torch.Tensor) -> None:
        """One batch (B, D, h, w) of the epoch, the next B fit maps."""
        count = embedding.shape[0]
        if not self.streams:
            self._open(embedding, maps)
        if self.filled + count > len(self.roles):
            raise RuntimeError(f"the fit epoch gave more than the {len(self.roles)} planned maps")
        items = np.arange(self.filled, self.filled + count)
        channels_last = embedding.permute(0, 2, 3, 1)
        for j, name in enumerate(self.names):
            mine = np.flatnonzero(self.bank_of[items] == j)
            if len(mine):
                rows = torch.as_tensor(mine, device=embedding.device)
                patches = channels_last.index_select(0, rows)
                tags = torch.as_tensor(self.codes[items[mine]], device=embedding.device)
                per_map = patches.shape[1] * patches.shape[2]
                self.streams[name].add(patches.reshape(-1, patches.shape[-1]), tags.repeat_interleave(per_map))
        calibration = np.flatnonzero(self.roles[items] == CALIBRATION)
        if len(calibration):
            slots = torch.as_tensor(np.searchsorted(self.calibration_items, items[calibration]),
                                    device=embedding.device)
            rows = torch.as_tensor(calibration, device=embedding.device)
            self.buffer.index_copy_(0, slots, channels_last.index_select(0, rows))
            self.maps.index_copy_(0, slots, maps.index_select(0, rows.to(maps.device)).to(self.maps.dtype))
        self.filled += count

    def check_complete(self) -> None:
        if not self.streams or self.filled != len(self.roles):
            raise RuntimeError(f"the fit epoch gave {self.filled} of the {len(self.roles)} planned maps")

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(calibration embeddings (C, D, h, w) as a view, their raw maps, their codes)."""
        return self.buffer.permute(0, 3, 1, 2), self.maps, self.codes[self.calibration_items]
