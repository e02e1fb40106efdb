"""Where on a map its strongest anomaly lies, in map coordinates: the row (for a gearbox, the meshing position of the
damaged tooth), the span of columns it covers, and the score behind it; and how often the named row is a true band
row. One rule for every kind:

- row: with a band detector in the model (the band kind, PatchCore fused with it), the row whose line statistic is
  largest (exact to the row); else the row of the anomaly map's maximum, the map upsampled to the map's size.
- columns: the first to the last column of that row above the level of the other rows (their median plus 3 robust
  spreads): of the anomaly map, or, for a band detector's line (one value per row), of each row's excess over the
  mean of its two neighbouring rows (smoothed over 5 columns). A broken band spans from its first piece to its last.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hdmap.evaluation.uncertainty import wilson_interval

SMOOTH_COLUMNS = 5
NOISE_LEVEL = 3.0  # columns above the other rows' median by this many robust spreads belong to the anomaly
HIT_TOLERANCE = 1  # a named row within this many rows of a true band row is a hit


def upsampled(anomaly_maps: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) anomaly maps at the maps' size (bilinear, as the report's plots)."""
    maps = anomaly_maps.float()
    if tuple(maps.shape[-2:]) != tuple(shape):
        maps = F.interpolate(maps[:, None], size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]
    return maps.cpu().numpy()


def column_span(profiles: np.ndarray, row: int) -> tuple[int, int]:
    """(first, last) column of `profiles[row]` above the level of the other rows: their median plus NOISE_LEVEL times
    their robust spread (1.4826 MAD), rows next to `row` left out; the peak column alone when none is above."""
    others = np.delete(profiles, [r for r in (row - 1, row, row + 1) if 0 <= r < len(profiles)], axis=0)
    values = profiles[row]
    if others.size:
        centre = np.median(others)
        level = centre + NOISE_LEVEL * 1.4826 * np.median(np.abs(others - centre))
        above = np.flatnonzero(values > level)
        if len(above):
            return int(above[0]), int(above[-1])
    peak = int(np.argmax(values))
    return peak, peak


def row_excess(map_: np.ndarray) -> np.ndarray:
    """(H, W): each row's excess over the mean of its neighbouring rows, smoothed along the columns."""
    padded = np.pad(map_, ((1, 1), (0, 0)), mode="edge")
    excess = map_ - (padded[:-2] + padded[2:]) / 2
    kernel = np.ones(SMOOTH_COLUMNS) / SMOOTH_COLUMNS
    return np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="same"), 1, excess)


def locate(outputs: dict, maps: np.ndarray) -> dict[str, np.ndarray]:
    """{'row', 'col_start', 'col_end', 'row_score'} per map (arrays), from a kind's scoring outputs: `band_rows`
    (N, H) line statistics when the model has a band detector, else `patch_maps` (N, h, w)."""
    maps = np.asarray(maps, dtype=np.float64)
    n, height, _ = maps.shape
    out = {name: np.zeros(n, dtype=np.int64) for name in ("row", "col_start", "col_end")}
    out["row_score"] = np.zeros(n)
    lines = outputs.get("band_rows")
    if lines is not None:
        lines = lines.double().cpu().numpy()
        out["row"] = lines.argmax(axis=1)
        out["row_score"] = lines[np.arange(n), out["row"]]
        for k in range(n):
            out["col_start"][k], out["col_end"][k] = column_span(row_excess(maps[k]), int(out["row"][k]))
        return out
    anomaly = upsampled(outputs["patch_maps"], maps.shape[1:])
    for k in range(n):
        row = int(np.unravel_index(np.argmax(anomaly[k]), anomaly[k].shape)[0])
        out["row"][k], out["row_score"][k] = row, anomaly[k, row].max()
        out["col_start"][k], out["col_end"][k] = column_span(anomaly[k], row)
    return out


def row_hits(rows: np.ndarray, truth: list[tuple[int, int] | None]) -> dict:
    """The row hit rate: the share of maps with a true band whose named row lies within HIT_TOLERANCE rows of one of
    its core rows, with a 95 % Wilson interval."""
    pairs = [(int(row), span) for row, span in zip(rows, truth) if span is not None]
    hits = sum(span[0] - HIT_TOLERANCE <= row <= span[1] + HIT_TOLERANCE for row, span in pairs)
    if not pairs:
        return {"row_hit_rate": None, "n": 0, "hits": 0, "interval": None, "tolerance_rows": HIT_TOLERANCE}
    return {"row_hit_rate": hits / len(pairs), "n": len(pairs), "hits": hits,
            "interval": list(wilson_interval(hits, len(pairs))), "tolerance_rows": HIT_TOLERANCE}
