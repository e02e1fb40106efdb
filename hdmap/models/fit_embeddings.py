"""The embeddings of a fit's maps in one preallocated buffer: the only full copy of the pre-coreset bank.

Rows are channels-last (map, h, w, D) and ordered by role (references, then calibration maps) and, within the
references, by condition code (a stable order: within a condition, the maps keep their order, so a bank sees its
patches exactly as a per-condition selection would give them). Each bank's patches are then a contiguous slice,
flattened to (patches, D) without a copy.
"""
from __future__ import annotations

import numpy as np
import torch

from hdmap.features.feature_datamodule import CALIBRATION, REFERENCE


class FitEmbeddings:
    """Filled batch by batch in the fit epoch's order; `roles` / `codes`: one per fit map, in that order."""

    def __init__(self, roles: np.ndarray, codes: np.ndarray, by_code: bool):
        self.roles, self.codes = np.asarray(roles, np.int64), np.asarray(codes, np.int64)
        by_condition = self.codes.clip(min=0) * (self.roles == REFERENCE) if by_code else 0
        key = self.roles * 2 + by_condition  # references (by condition), then the calibration maps in their order
        order = np.argsort(key, kind="stable")  # slot -> item
        self.slot_of = np.empty_like(order)
        self.slot_of[order] = np.arange(len(order))  # item -> slot
        self.sorted_roles, self.sorted_codes = self.roles[order], self.codes[order]
        self.buffer: torch.Tensor | None = None  # (maps, h, w, D)
        self.maps: torch.Tensor | None = None  # (maps, H, W) raw maps (band fusion calibration)
        self.filled = 0

    def add(self, embedding: torch.Tensor, maps: torch.Tensor) -> None:
        """One batch (B, D, h, w) of the epoch, the next B fit maps."""
        count = embedding.shape[0]
        if self.buffer is None:
            n, (d, h, w) = len(self.roles), embedding.shape[1:]
            self.buffer = embedding.new_empty((n, h, w, d))
            self.maps = maps.new_empty((n, *maps.shape[1:]))
        if self.filled + count > len(self.roles):
            raise RuntimeError(f"the fit epoch gave more than the {len(self.roles)} planned maps")
        slots = torch.as_tensor(self.slot_of[self.filled:self.filled + count], device=self.buffer.device)
        self.buffer.index_copy_(0, slots, embedding.permute(0, 2, 3, 1))
        self.maps.index_copy_(0, slots, maps.to(self.maps.dtype))
        self.filled += count

    def check_complete(self) -> None:
        if self.buffer is None or self.filled != len(self.roles):
            raise RuntimeError(f"the fit epoch gave {self.filled} of the {len(self.roles)} planned maps")

    def rows(self, role: int, code: int | None = None) -> slice:
        """The contiguous slots of one role (and condition code)."""
        mask = self.sorted_roles == role
        if code is not None:
            mask &= self.sorted_codes == code
        found = np.flatnonzero(mask)
        return slice(int(found[0]), int(found[-1]) + 1) if len(found) else slice(0, 0)

    def references(self) -> tuple[torch.Tensor, np.ndarray]:
        """(reference embeddings (R, h, w, D), their codes), a view of the buffer."""
        part = self.rows(REFERENCE)
        return self.buffer[part], self.sorted_codes[part]

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(calibration embeddings (C, D, h, w) as a view, their raw maps, their codes)."""
        part = self.rows(CALIBRATION)
        return self.buffer[part].permute(0, 3, 1, 2), self.maps[part], self.sorted_codes[part]
