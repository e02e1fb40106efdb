"""The matched filters of the band detector: for every line of a transformed, detrended map, the statistic of a band
of a given width and extent along it. Pure tensor functions; the detector (hdmap/models/band.py) standardises them.

A member of the family is (width in lines, neighbour comparison off/on, extent): the extent is a contiguous run of
a fraction of the line (its largest mean), or `top` of the line cut into `pieces` equal pieces (the mean of its
brightest few: a band broken along the row, a train of short pulses)."""
from __future__ import annotations

import torch

SIGNS = {"bright": lambda v: v, "dark": lambda v: -v, "both": torch.abs}


def neighbour_mean(lines: torch.Tensor) -> torch.Tensor:
    """Mean of the line above and below each line of (N, L, ...) (one neighbour at the edges)."""
    up = torch.cat([lines[:, 1:2], lines[:, :-1]], dim=1)  # line i-1 (line 1 for the first)
    down = torch.cat([lines[:, 1:], lines[:, -2:-1]], dim=1)  # line i+1 (line L-2 for the last)
    return (up + down) / 2


def run_means(lines: torch.Tensor, length: int) -> torch.Tensor:
    """(N, L, P) means of every run of `length` consecutive values along the last axis of (N, L, K)."""
    padded = torch.nn.functional.pad(lines.cumsum(dim=-1), (1, 0))
    return (padded[..., length:] - padded[..., :-length]) / length


def run_lengths(fractions: tuple[float, ...], size: int) -> list[int]:
    return [max(1, min(size, int(round(fraction * size)))) for fraction in fractions]


def window_lines(values: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(band, flanks), each (N, L, K): the mean of the `width` lines around each line of (N, L, K) (the window
    starts (width-1)//2 lines above it, shifted inside the map at its edges) and the mean of the two lines just
    outside that window (the one inside the map at an edge)."""
    count = values.shape[1]
    if width == 1:
        return values, neighbour_mean(values)
    width = min(width, count - 1)
    cumulative = torch.nn.functional.pad(values.cumsum(dim=1), (0, 0, 1, 0))
    start = (torch.arange(count) - (width - 1) // 2).clamp(0, count - width).to(values.device)
    end = start + width
    band = (cumulative[:, end] - cumulative[:, start]) / width
    above = torch.where(start > 0, start - 1, end)  # the line above the window, or below it at the top edge
    below = torch.where(end < count, end, start - 1)
    return band, (values[:, above] + values[:, below]) / 2


def piece_means(lines: torch.Tensor, pieces: int) -> torch.Tensor:
    """(N, L, pieces) means of `pieces` near-equal pieces along the last axis of (N, L, K)."""
    size = lines.shape[-1]
    edges = torch.linspace(0, size, min(pieces, size) + 1).round().long().tolist()
    return torch.stack([lines[..., a:b].mean(dim=-1) for a, b in zip(edges[:-1], edges[1:])], dim=-1)


def extent_statistics(values: torch.Tensor, runs: list[int], pieces: int, top_pieces: int,
                      polarity: str) -> list[torch.Tensor]:
    """[(N, L)] per extent: the largest signed run mean for each run length, then (pieces > 0) the mean of the
    `top_pieces` largest signed piece means."""
    sign = SIGNS[polarity]
    out = [sign(run_means(values, length)).amax(dim=-1) for length in runs]
    if pieces > 0:
        signed = sign(piece_means(values, pieces))
        out.append(signed.topk(min(top_pieces, signed.shape[-1]), dim=-1).values.mean(dim=-1))
    return out


def family_statistics(values: torch.Tensor, widths: tuple[int, ...], compare: tuple[bool, ...], runs: list[int],
                      pieces: int, top_pieces: int, polarity: str) -> torch.Tensor:
    """(N, L, members) of detrended lines (N, L, K): for each width, for each of `compare` (the flanking lines
    subtracted or not), each extent."""
    out = []
    for width in widths:
        band, flanks = window_lines(values, width)
        for compared in compare:
            out += extent_statistics(band - flanks if compared else band, runs, pieces, top_pieces, polarity)
    return torch.stack(out, dim=-1)


def true_median(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The median along `dim`, the mean of the two middle values for an even count (torch.median returns the lower
    one)."""
    ordered = values.sort(dim=dim).values
    count = values.shape[dim]
    return (ordered.select(dim, (count - 1) // 2) + ordered.select(dim, count // 2)) / 2
