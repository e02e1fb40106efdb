"""The shapes a fault band takes in the synthetic generator, and the smooth gain drift of a map's rows or columns.

A damaged tooth raises the energy at its meshing row. On a real gearbox that band is 1-3 rows wide with soft
edges, need not span the whole row (it can be broken into pieces, or be a train of short pulses where the tooth
meets several planets per revolution), may add energy rather than multiply it, and sits on maps whose row and
column gains drift from map to map. `BandShape()` draws today's band (one or two rows, flat, full or one partial
run, multiplicative) with the same random draws, so default data sets stay bit for bit the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTENTS = ("contiguous", "broken", "pulses", "mixed")  # mixed: each map draws one of the other three
PROFILES = ("flat", "soft")
MODES = ("multiplicative", "additive")
SOFT_EDGE = 0.4  # share of the band's contrast in the row just outside each edge of a soft band


@dataclass(frozen=True)
class BandShape:
    """How a fault band is drawn: its widths (rows, inclusive range), edge profile, extent along the row and
    whether its contrast multiplies the map or adds to it."""

    widths: tuple[int, int] = (1, 2)
    profile: str = "flat"
    extent: str = "contiguous"
    mode: str = "multiplicative"

    def __post_init__(self):
        low, high = self.widths
        if not 1 <= low <= high <= 5:
            raise ValueError(f"band widths must be 1 <= low <= high <= 5 rows, got {low}-{high}")
        for name, value, known in (("profile", self.profile, PROFILES), ("extent", self.extent, EXTENTS),
                                   ("mode", self.mode, MODES)):
            if value not in known:
                raise ValueError(f"band {name} {value!r} unknown; known: {', '.join(known)}")


def smooth_gain(size: int, drift: float, rng: np.random.Generator) -> np.ndarray:
    """(size,) gain 1 + drift x a smooth random profile of unit sd (three cosines of 0.5-2.5 cycles over the
    axis), floored at 0.1: a map's own slow variation of gain along its rows or columns."""
    t = np.linspace(0.0, 1.0, size)
    profile = sum(rng.standard_normal() * np.cos(2 * np.pi * rng.uniform(0.5, 2.5) * t + rng.uniform(0, 2 * np.pi))
                  for _ in range(3))
    profile = (profile - profile.mean()) / max(float(profile.std()), 1e-9)
    return np.maximum(1.0 + drift * profile, 0.1)


def _contiguous(cols: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The whole row (half the maps) or one run of 30-80 % of it (today's bands)."""
    if rng.random() < 0.5:
        return [(0, cols)]
    length = int(rng.integers(int(0.3 * cols), int(0.8 * cols)))
    start = int(rng.integers(0, cols - length))
    return [(start, start + length)]


def _broken(cols: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A run of 40-100 % of the row cut into 2-4 pieces, each 30-70 % of its share of the run."""
    length = int(rng.integers(int(0.4 * cols), cols + 1))
    start = int(rng.integers(0, cols - length + 1))
    count = int(rng.integers(2, 5))
    edges = np.linspace(start, start + length, count + 1)
    pieces = []
    for left, right in zip(edges[:-1], edges[1:]):
        piece = max(2, int(round(rng.uniform(0.3, 0.7) * (right - left))))
        begin = int(rng.integers(int(left), max(int(left) + 1, int(right) - piece + 1)))
        pieces.append((begin, min(begin + piece, cols)))
    return pieces


def _pulses(cols: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A train of 3-6 pulses of 3-6 columns, evenly spaced along the whole row from a random phase."""
    count = int(rng.integers(3, 7))
    period = cols / count
    length = int(rng.integers(3, 7))
    phase = rng.uniform(0, period)
    starts = [int(phase + k * period) % cols for k in range(count)]
    return sorted((s, min(s + length, cols)) for s in starts)


def draw_band(image: np.ndarray, contrast: float, shape: BandShape, rng: np.random.Generator) -> dict:
    """Add one band to `image` in place; returns its ground truth: core rows `row`..`row + width - 1`, the column
    span `col_start`..`col_end` (end exclusive), its `pieces` ("start-end;..."), contrast, profile and mode."""
    rows, cols = image.shape
    width = int(rng.integers(shape.widths[0], shape.widths[1] + 1))
    row = int(rng.integers(1, rows - width))
    extent = shape.extent if shape.extent != "mixed" else str(rng.choice(EXTENTS[:3]))
    pieces = {"contiguous": _contiguous, "broken": _broken, "pulses": _pulses}[extent](cols, rng)
    weights = {r: 1.0 for r in range(row, row + width)}
    if shape.profile == "soft":
        weights.update({r: SOFT_EDGE for r in (row - 1, row + width) if 0 <= r < rows})
    level = float(image.mean())  # additive bands add a share of the map's mean level
    for r, weight in weights.items():
        for start, end in pieces:
            if shape.mode == "additive":
                image[r, start:end] += (contrast - 1.0) * weight * level
            elif weight == 1.0:
                image[r, start:end] *= contrast
            else:
                image[r, start:end] *= 1.0 + (contrast - 1.0) * weight
    return {"row": row, "width": width, "col_start": min(s for s, _ in pieces), "col_end": max(e for _, e in pieces),
            "pieces": ";".join(f"{s}-{e}" for s, e in pieces), "contrast": contrast, "extent": extent,
            "profile": shape.profile, "mode": shape.mode}
