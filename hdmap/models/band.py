"""Torch core of the band detector: a matched filter for thin HORIZONTAL (or vertical) bands, no backbone.

A damaged tooth multiplies a run of one or two rows of the map by a faint contrast. Per map: a transform (log
turns that contrast, and the warm state's overall gain, into offsets), removal of the smooth structure (by default
each map's column profile), then for every line (row) the largest mean of a run of columns (optionally compared
with the same run in the neighbouring lines), at several run lengths at once. The largest run statistic of a line is z-scored against the train maps (per line, per run length,
optionally per condition through a gate); the image score is the largest line z (or the mean of the top few).
No Lightning here: hdmap/models/lightning_band.py wraps it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdmap.condition_names import CONDITIONS
from hdmap.gating.gates import Gate, GateConfig
from hdmap.resizable_buffers import ResizableBuffers
from hdmap.setting_rules import check_instance, setting

DIRECTIONS = ("rows", "columns", "both")
TRANSFORMS = ("log", "linear", "percentile")
DETRENDS = ("column_profile", "train_mean", "neighbour_lines")
POLARITIES = ("bright", "dark", "both")
CENTRES = ("mean_std", "median_mad")
IMAGE_SCORES = ("max", "top")
MIN_PER_CONDITION = 8  # train maps a condition needs for its own line statistics


@dataclass(frozen=True)
class BandConfig:
    """Settings of the band detector; every one is a search dimension (search_spaces/band.yaml). The defaults of
    polarity, compare_neighbours, runs and detrend are the best mean tune AUROC of a grid over them on eight
    synthetic sets (experiments/results/band_vs_patchcore.md, step 1)."""

    direction: str = setting("rows", "lines the matched filter follows: rows (horizontal bands: a damaged tooth), "
                             "columns or both", choices=DIRECTIONS)
    transform: str = setting("log", "intensity scale: log (multiplicative contrast and warm gain become offsets), "
                             "linear, or percentile (each map divided by its own percentile)", choices=TRANSFORMS)
    percentile: float = setting(50.0, "transform percentile: the percentile each map is divided by", low=0,
                                high=100, low_open=True)
    detrend: str = setting("column_profile", "what is subtracted first: each map's column profile, the condition's "
                           "train mean map, or the neighbouring lines", choices=DETRENDS)
    compare_neighbours: bool = setting(False, "a run's mean minus the mean of the same run in the two neighbouring "
                                       "lines")
    runs: tuple[float, ...] = setting((0.5, 0.25), "run lengths of the matched filter, as fractions of a line "
                                      "(each in (0, 1])")
    polarity: str = setting("bright", "bands brighter, darker, or either (|statistic|)", choices=POLARITIES)
    centre_scale: str = setting("mean_std", "normalisation of a line statistic on train: mean_std, or median_mad "
                                "(robust)", choices=CENTRES)
    per_condition: bool = setting(False, "line statistics per gate-assigned condition (cold / warm) instead of pooled")
    image_score: str = setting("max", "image score: the largest line statistic (max) or the mean of the top_k",
                               choices=IMAGE_SCORES)
    top_k: int = setting(3, "image_score top: lines averaged", low=1)
    gate: GateConfig = setting(help="the gate of per_condition statistics", factory=GateConfig)

    def __post_init__(self):
        if isinstance(self.gate, dict):
            object.__setattr__(self, "gate", GateConfig(**self.gate))
        object.__setattr__(self, "runs", tuple(float(r) for r in ((self.runs,) if isinstance(self.runs, (int, float))
                                                              else self.runs)))
        check_instance(self)
        if not self.runs or not all(0 < r <= 1 for r in self.runs):
            raise ValueError(f"runs must be fractions of a line in (0, 1], got {list(self.runs)}")
        if self.gate.uses_features and (self.per_condition or self.gate.kind == "discover"):
            raise ValueError(f"gate.kind {self.gate.kind!r} (discover_on {self.gate.discover_on!r}) reads backbone "
                             f"features; the band detector has none (a gate on intensity: intensity, discover on "
                             f"intensity, oracle)")


def transform_maps(maps: torch.Tensor, config: BandConfig) -> torch.Tensor:
    """(N, H, W) float64 maps in the detector's intensity scale."""
    maps = maps.double()
    if config.transform == "linear":
        return maps
    if config.transform == "percentile":
        level = torch.quantile(maps.flatten(1), config.percentile / 100, dim=1)
        return maps / level.abs().clamp_min(1e-12)[:, None, None]
    # log: a floor proportional to each map's median keeps log(1.4 x) = log 1.4 + log x exactly, zeros finite
    floor = 1e-3 * maps.flatten(1).abs().median(dim=1).values
    floor = torch.where(floor > 0, floor, torch.full_like(floor, 1e-12))
    return torch.log(torch.maximum(maps, floor[:, None, None]))


def neighbour_mean(lines: torch.Tensor) -> torch.Tensor:
    """Mean of the line above and below each line of (N, L, ...) (one neighbour at the edges)."""
    up = torch.cat([lines[:, 1:2], lines[:, :-1]], dim=1)  # line i-1 (line 1 for the first)
    down = torch.cat([lines[:, 1:], lines[:, -2:-1]], dim=1)  # line i+1 (line L-2 for the last)
    return (up + down) / 2


def run_means(lines: torch.Tensor, length: int) -> torch.Tensor:
    """(N, L, P) means of every run of `length` consecutive values along the last axis of (N, L, K)."""
    padded = torch.nn.functional.pad(lines.cumsum(dim=-1), (1, 0))
    return (padded[..., length:] - padded[..., :-length]) / length


def run_lengths(config: BandConfig, size: int) -> list[int]:
    return [max(1, min(size, int(round(fraction * size)))) for fraction in config.runs]


class BandDetector(ResizableBuffers):
    """The fitted detector: train mean maps and line statistics per condition are buffers (a data-only state that
    takes the map size of the data it is fitted on, or of the checkpoint it is loaded from)."""

    def __init__(self, config: BandConfig | None = None, shape: tuple[int, int] = (31, 95)):
        super().__init__()
        self.config = config or BandConfig()
        self.gate = Gate(self.config.gate)
        self._allocate(tuple(int(s) for s in shape))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("pooled", torch.tensor(True))  # one set of line statistics for both conditions
        self.notes: list[str] = []

    def _allocate(self, shape: tuple[int, int]) -> None:
        height, width = shape
        runs, conditions = len(self.config.runs), len(CONDITIONS)
        self.register_buffer("mean_map", torch.zeros(conditions, height, width, dtype=torch.float64))
        for name, lines in (("rows", height), ("columns", width)):
            self.register_buffer(f"centre_{name}", torch.zeros(conditions, lines, runs, dtype=torch.float64))
            self.register_buffer(f"scale_{name}", torch.ones(conditions, lines, runs, dtype=torch.float64))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean_map.shape[1:])

    @property
    def directions(self) -> tuple[str, ...]:
        return ("rows", "columns") if self.config.direction == "both" else (self.config.direction,)

    @property
    def uses_gate(self) -> bool:
        return self.config.per_condition

    # --- the statistic ----------------------------------------------------------------------------------------
    def line_statistics(self, maps: torch.Tensor, codes: torch.Tensor, direction: str) -> torch.Tensor:
        """(N, lines, runs) largest run statistic of each line of transformed `maps`, before normalisation."""
        cfg = self.config
        values = maps - self.mean_map[codes] if cfg.detrend == "train_mean" else maps
        if direction == "columns":
            values = values.transpose(1, 2)  # lines are columns, runs go down them
        if cfg.detrend == "column_profile":
            values = values - values.mean(dim=1, keepdim=True)  # the profile along a line, shared by all lines
        elif cfg.detrend == "neighbour_lines":
            values = values - neighbour_mean(values)
        out = []
        for length in run_lengths(cfg, values.shape[-1]):
            means = run_means(values, length)
            if cfg.compare_neighbours:
                means = means - neighbour_mean(means)
            signed = {"bright": means, "dark": -means, "both": means.abs()}[cfg.polarity]
            out.append(signed.amax(dim=-1))
        return torch.stack(out, dim=-1)

    def _check_shape(self, maps: torch.Tensor) -> None:
        if tuple(maps.shape[1:]) != self.shape:
            raise ValueError(f"the band detector was built for {self.shape[0]}x{self.shape[1]} maps, got "
                             f"{tuple(maps.shape[1:])}")

    # --- fitting ----------------------------------------------------------------------------------------------
    def fit(self, train_maps, train_truth: list[str] | None = None) -> "BandDetector":
        """Line statistics of the train normals (per gate-assigned condition when `per_condition`)."""
        maps = torch.as_tensor(np.asarray(train_maps)).double()
        if tuple(maps.shape[1:]) != self.shape:
            self._allocate(tuple(maps.shape[1:]))
        self.notes = []
        codes, pooled = torch.zeros(len(maps), dtype=torch.long), True
        if self.uses_gate:
            assigned = self.gate.assign_train(maps.float(), None, train_truth).cpu().long()
            counts = {name: int((assigned == c).sum()) for c, name in enumerate(CONDITIONS)}
            bimodal, why = self.gate.intensity_split_is_clear(maps, assigned)
            if min(counts.values()) < MIN_PER_CONDITION or not bimodal:
                self.notes.append(f"band detector: gate '{self.config.gate.kind}' did not split train into two "
                                  f"clear conditions of >= {MIN_PER_CONDITION} maps ({why}; counts {counts}): "
                                  f"its line statistics are pooled")
            else:
                codes, pooled = assigned, False
        transformed = transform_maps(maps, self.config)
        groups = [codes == code for code in range(len(CONDITIONS))] if not pooled else [codes == 0] * 2
        for code, members in enumerate(groups):
            self.mean_map[code] = transformed[members].mean(dim=0)
        for direction in self.directions:
            stats = self.line_statistics(transformed, codes, direction)
            centre, scale = getattr(self, f"centre_{direction}"), getattr(self, f"scale_{direction}")
            for code, members in enumerate(groups):
                centre[code], scale[code] = self._centre_scale(stats[members])
        self.pooled.fill_(pooled)
        self.fitted.fill_(True)
        return self

    def _centre_scale(self, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.centre_scale == "median_mad":
            centre = stats.median(dim=0).values
            scale = 1.4826 * (stats - centre).abs().median(dim=0).values
        else:
            centre, scale = stats.mean(dim=0), stats.std(dim=0)
        return centre, scale.clamp_min(1e-9)

    # --- scoring ----------------------------------------------------------------------------------------------
    def route(self, maps: torch.Tensor, known: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(condition codes, p_warm) of maps through the fitted gate (all 0 when statistics are pooled)."""
        if not self.uses_gate:
            zeros = torch.zeros(len(maps), dtype=torch.long, device=maps.device)
            return zeros, zeros.double()
        route, p_warm = self.gate.route(maps.float(), None, known)
        return route.long(), p_warm.double()

    @torch.no_grad()
    def line_z(self, maps, known: list[str] | None = None) -> dict:
        """{'rows': (N, H) or None, 'columns': (N, W) or None, 'route', 'p_warm'}: each line's z, the largest over
        run lengths."""
        if not bool(self.fitted):
            raise RuntimeError("the band detector is not fitted: call fit() (or load a fitted checkpoint) first")
        maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).double()
        maps = maps.to(self.mean_map.device)
        self._check_shape(maps)
        route, p_warm = self.route(maps, known)
        codes = torch.zeros_like(route) if bool(self.pooled) else route
        transformed = transform_maps(maps, self.config)
        out = {"rows": None, "columns": None, "route": route, "p_warm": p_warm}
        for direction in self.directions:
            centre, scale = getattr(self, f"centre_{direction}"), getattr(self, f"scale_{direction}")
            stats = self.line_statistics(transformed, codes, direction)
            out[direction] = ((stats - centre[codes]) / scale[codes]).amax(dim=-1)
        return out

    @torch.no_grad()
    def score(self, maps, known: list[str] | None = None) -> dict:
        """{'scores' (N,), 'patch_maps' (N, H, W): each line drawn with its z, 'route', 'p_warm'} of raw maps."""
        lines = self.line_z(maps, known)
        height, width = self.shape
        per_line = torch.cat([lines[d] for d in self.directions], dim=1)
        if self.config.image_score == "top":
            k = min(self.config.top_k, per_line.shape[1])
            scores = per_line.topk(k, dim=1).values.mean(dim=1)
        else:
            scores = per_line.amax(dim=1)
        drawn = []
        if lines["rows"] is not None:
            drawn.append(lines["rows"][:, :, None].expand(-1, height, width))
        if lines["columns"] is not None:
            drawn.append(lines["columns"][:, None, :].expand(-1, height, width))
        patch_maps = torch.stack(drawn).amax(dim=0)
        return {"scores": scores, "patch_maps": patch_maps.float(), "route": lines["route"],
                "p_warm": lines["p_warm"].float()}
