"""Torch core of the band detector: matched filters for thin HORIZONTAL (or vertical) bands, no backbone.

A damaged tooth raises a band of one to three rows of the map, along all or part of the row. Per map: a transform
(log turns a multiplicative contrast, and the warm state's overall gain, into offsets; percentile divides each map
by its own level), removal of the smooth structure (by default each map's column profile), then for every line
(row) the matched filters' statistics (hdmap/models/band_filters.py). Each statistic of a line is standardised on
the train maps (per line and filter, optionally per condition through a gate); a line's z is its largest, the
image score the largest line z (or the mean of the top few).

`statistic=family` (the default) runs a family of filters at once: two transforms (log, percentile) x band widths
x neighbour comparison off and on x extents (contiguous runs, the brightest pieces of the line); since each member
is standardised on train normals, the largest member is a generalised likelihood ratio over band shapes: no band
shape needs to be known or searched. `statistic=single` is one filter (its transform and neighbour comparison).
No Lightning here: hdmap/kinds/band/module.py wraps it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdmap.condition_names import CONDITIONS
from hdmap.gating.gates import GateSettings, build_gate
from hdmap.models.band_filters import family_statistics, neighbour_mean, run_lengths, true_median
from hdmap.resizable_buffers import ResizableBuffers
from hdmap.setting_rules import check_instance, setting

DIRECTIONS = ("rows", "columns", "both")
TRANSFORMS = ("log", "linear", "percentile")
DETRENDS = ("column_profile", "train_mean", "neighbour_lines")
POLARITIES = ("bright", "dark", "both")
CENTRES = ("mean_std", "median_mad")
IMAGE_SCORES = ("max", "top")
STATISTICS = ("family", "single")
FAMILY_TRANSFORMS = ("log", "percentile")  # the transforms of statistic=family
MIN_PER_CONDITION = 8  # train maps a condition needs for its own line statistics
# A condition's own line scales weigh n / (n + SHRINK_MAPS) against a pooled target (`shrunk`; n: its train maps):
# 20 % at 8 maps, 57 % at 42, 86 % at 200. A standard deviation from n maps is off by ~1/sqrt(2n) (25 % at 8 maps),
# and an image score is a maximum over many lines: a few underestimated scales inflate a condition's normal scores.
SHRINK_MAPS = 32
FLOOR_PERCENTILE = 1.0  # the log transform's floor: this percentile of the train pixels, relative to their map's median
FLOOR_MAPS = 2000  # train maps the floor is read from (the first ones; a percentile needs no more)


@dataclass(frozen=True)
class BandSettings:
    """Settings of the band detector; every one is a search dimension (search_spaces/band.yaml). How the defaults
    were chosen, across families of band shapes: docs/model.md and experiments/results/band_families.md."""

    statistic: str = setting("family", "family: the largest train-standardised member of a family of matched "
                             "filters (transforms log and percentile x widths x neighbour comparison off and on x "
                             "runs and pieces); single: one filter (transform, compare_neighbours, runs)",
                             choices=STATISTICS)
    widths: tuple[int, ...] = setting((1, 2, 3), "statistic family: band widths in lines", items_low=1)
    pieces: int = setting(12, "statistic family: a line cut into this many pieces, the member averaging its "
                          "brightest top_pieces (a band broken along the row, a train of pulses); 0 = no such member",
                          low=0)
    top_pieces: int = setting(3, "statistic family: pieces averaged", low=1)
    direction: str = setting("rows", "lines the matched filter follows: rows (horizontal bands: a damaged tooth), "
                             "columns or both", choices=DIRECTIONS)
    transform: str = setting("log", "statistic single: intensity scale: log (multiplicative contrast and warm gain "
                             "become offsets), linear, or percentile (each map divided by its own percentile)",
                             choices=TRANSFORMS)
    percentile: float = setting(50.0, "the percentile transform (the family's, or single's transform percentile): the "
                                "percentile each map is divided by", low=0, high=100, low_open=True)
    detrend: str = setting("column_profile", "what is subtracted first: each map's column profile, the condition's "
                           "train mean map, or the neighbouring lines", choices=DETRENDS)
    compare_neighbours: bool = setting(False, "statistic single: a run's mean minus the mean of the same run in the "
                                       "two neighbouring lines (the family has both)")
    runs: tuple[float, ...] = setting((1.0, 0.5, 0.25), "run lengths of the matched filter, as fractions of a line "
                                      "(each in (0, 1])")
    polarity: str = setting("bright", "bands brighter, darker, or either (|statistic|)", choices=POLARITIES)
    centre_scale: str = setting("mean_std", "normalisation of a line statistic on train: mean_std, or median_mad "
                                "(robust)", choices=CENTRES)
    per_condition: bool = setting(True, "line statistics per gate-assigned condition (cold / warm; scales shrunk "
                                  "towards the pooled ones by count) instead of pooled; pooled, with a note, when the "
                                  "gate does not split train into two clear conditions")
    image_score: str = setting("max", "image score: the largest line statistic (max) or the mean of the top_k",
                               choices=IMAGE_SCORES)
    top_k: int = setting(3, "image_score top: lines averaged", low=1)
    gate: GateSettings = setting(help="the gate of per_condition statistics", factory=GateSettings)
    fit_maps: int = setting(4096, "train maps the line statistics are fitted on: all of them up to this many, else a "
                            "seeded sample of this many (memory bounded on domains of 100,000 maps; the sampling "
                            "error of a line's centre is 1/64 of its scale at 4096)", low=2)

    def __post_init__(self):
        if isinstance(self.gate, dict):
            object.__setattr__(self, "gate", GateSettings(**self.gate))
        object.__setattr__(self, "runs", tuple(float(r) for r in ((self.runs,) if isinstance(self.runs, (int, float))
                                                              else self.runs)))
        object.__setattr__(self, "widths", tuple(int(w) for w in ((self.widths,) if isinstance(self.widths, int)
                                                                  else self.widths)))
        check_instance(self)
        if not self.runs or not all(0 < r <= 1 for r in self.runs):
            raise ValueError(f"runs must be fractions of a line in (0, 1], got {list(self.runs)}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be band widths of at least one line, got {list(self.widths)}")
        if self.gate.uses_features and (self.per_condition or self.gate.kind == "discover"):
            raise ValueError(f"gate.kind {self.gate.kind!r} (discover_on {self.gate.discover_on!r}) reads backbone "
                             f"features; the band detector has none (a gate on intensity: intensity, discover on "
                             f"intensity, oracle)")

    @property
    def transforms(self) -> tuple[str, ...]:
        return FAMILY_TRANSFORMS if self.statistic == "family" else (self.transform,)

    @property
    def members(self) -> int:
        """Statistics per line: transforms x widths x neighbour comparisons x extents (one of each when single)."""
        if self.statistic == "single":
            return len(self.runs)
        return len(FAMILY_TRANSFORMS) * len(self.widths) * 2 * (len(self.runs) + (1 if self.pieces > 0 else 0))


def transform_maps(maps: torch.Tensor, transform: str, percentile: float, log_floor: float) -> torch.Tensor:
    """(N, H, W) float64 maps in one intensity scale. log floors each map at `log_floor` x its median (fitted on
    train: `fit_log_floor`), which keeps log(1.4 x) = log 1.4 + log x exactly and zeros finite."""
    maps = maps.double()
    if transform == "linear":
        return maps
    if transform == "percentile":
        level = torch.quantile(maps.flatten(1), percentile / 100, dim=1)
        return maps / level.abs().clamp_min(1e-12)[:, None, None]
    floor = (log_floor * true_median(maps.flatten(1), dim=1).abs()).clamp_min(1e-12)
    return torch.log(torch.maximum(maps, floor[:, None, None]))


def fit_log_floor(maps: torch.Tensor) -> float:
    """The log transform's floor relative to a map's median: the FLOOR_PERCENTILE-th percentile of train pixels
    over their map's median (of the first FLOOR_MAPS maps), at least 1e-3. A clipped-zero pixel then sits at the
    train's own dark tail, not at a thousandth of the median (a strong dark outlier)."""
    flat = maps[:FLOOR_MAPS].double().flatten(1)
    medians = true_median(flat, dim=1).abs().clamp_min(1e-12)
    return max(float(np.percentile((flat / medians[:, None]).cpu().numpy(), FLOOR_PERCENTILE)), 1e-3)


Statistics = tuple[torch.Tensor, torch.Tensor]  # (centre, scale) per line and filter


def shrunk(fitted: list[Statistics], counts: list[int]) -> list[Statistics]:
    """Each condition's (centre, scale) per line and filter, its scale shrunk by its count n towards the count-weighted
    within-condition scale times the condition's own typical ratio to it (the median over all lines and filters:
    hundreds of values), with weight n / (n + SHRINK_MAPS). A condition that is noisier as a whole keeps that; only
    its line-to-line noise is shrunk. Centres stay its own (a mean of n maps is off by scale / sqrt(n); a scale
    underestimated on a few of many lines is what inflates the largest line z)."""
    weights = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    pooled_scale = sum(w * s ** 2 for w, (_, s) in zip(weights, fitted)).sqrt()
    out = []
    for count, (centre, scale) in zip(counts, fitted):
        ratio = true_median((scale / pooled_scale).flatten())
        weight = count / (count + SHRINK_MAPS)
        out.append((centre, (weight * scale ** 2 + (1 - weight) * (ratio * pooled_scale) ** 2).sqrt()))
    return out


def legacy_band_settings(band: dict) -> dict:
    """Band settings recorded before `statistic` existed described one filter: they load as statistic=single."""
    return band if "statistic" in band else {**band, "statistic": "single"}


def legacy_band_state(state: dict, prefix: str) -> None:
    """A band detector's state from before the family, in place: one transform's mean maps gain their transform
    axis, and the log floor is the 1e-3 x median it was then."""
    mean_map = state.get(prefix + "mean_map")
    if mean_map is not None and mean_map.dim() == 3:
        state[prefix + "mean_map"] = mean_map[:, None]
    if mean_map is not None and prefix + "log_floor" not in state:
        state[prefix + "log_floor"] = torch.tensor(1e-3, dtype=torch.float64)


class BandModel(ResizableBuffers):
    """The fitted detector: the log floor, train mean maps and line statistics per condition are buffers (a
    data-only state that takes the map size of the data it is fitted on, or of the checkpoint it is loaded from)."""

    def __init__(self, config: BandSettings | None = None, shape: tuple[int, int] = (31, 95)):
        super().__init__()
        self.config = config or BandSettings()
        self.gate = build_gate(self.config.gate)
        self._allocate(tuple(int(s) for s in shape))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("pooled", torch.tensor(True))  # one set of line statistics for both conditions
        self.register_buffer("log_floor", torch.tensor(1e-3, dtype=torch.float64))
        self.notes: list[str] = []

    def _allocate(self, shape: tuple[int, int]) -> None:
        height, width = shape
        members, conditions = self.config.members, len(CONDITIONS)
        self.register_buffer("mean_map", torch.zeros(conditions, len(self.config.transforms), height, width,
                                                     dtype=torch.float64))
        for name, lines in (("rows", height), ("columns", width)):
            self.register_buffer(f"centre_{name}", torch.zeros(conditions, lines, members, dtype=torch.float64))
            self.register_buffer(f"scale_{name}", torch.ones(conditions, lines, members, dtype=torch.float64))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean_map.shape[-2:])

    @property
    def directions(self) -> tuple[str, ...]:
        return ("rows", "columns") if self.config.direction == "both" else (self.config.direction,)

    @property
    def uses_gate(self) -> bool:
        return self.config.per_condition

    # --- the statistic ----------------------------------------------------------------------------------------
    def transformed(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """The maps in each of the configuration's intensity scales."""
        cfg = self.config
        return [transform_maps(maps, name, cfg.percentile, float(self.log_floor)) for name in cfg.transforms]

    def line_statistics(self, scales: list[torch.Tensor], codes: torch.Tensor, direction: str) -> torch.Tensor:
        """(N, lines, members) matched-filter statistics of each line of the transformed maps, before
        standardisation."""
        cfg = self.config
        family = cfg.statistic == "family"
        out = []
        for index, maps in enumerate(scales):
            values = maps - self.mean_map[codes, index] if cfg.detrend == "train_mean" else maps
            if direction == "columns":
                values = values.transpose(1, 2)  # lines are columns, runs go down them
            if cfg.detrend == "column_profile":
                values = values - values.mean(dim=1, keepdim=True)  # the profile along a line, shared by all lines
            elif cfg.detrend == "neighbour_lines":
                values = values - neighbour_mean(values)
            out.append(family_statistics(
                values, cfg.widths if family else (1,), (False, True) if family else (cfg.compare_neighbours,),
                run_lengths(cfg.runs, values.shape[-1]), cfg.pieces if family else 0, cfg.top_pieces, cfg.polarity))
        return torch.cat(out, dim=-1)

    def _check_shape(self, maps: torch.Tensor) -> None:
        if tuple(maps.shape[1:]) != self.shape:
            raise ValueError(f"the band detector was built for {self.shape[0]}x{self.shape[1]} maps, got "
                             f"{tuple(maps.shape[1:])}")

    # --- fitting ----------------------------------------------------------------------------------------------
    def fit(self, train_maps, train_truth: list[str] | None = None, rows=None) -> "BandModel":
        """Line statistics of the train normals (per gate-assigned condition when `per_condition`), on at most
        `fit_maps` of them (a seeded sample, said in the notes); `rows`: the train maps to read (default all)."""
        self.notes = []
        train_maps, train_truth = self._fit_sample(train_maps, train_truth, rows)
        maps = torch.as_tensor(np.asarray(train_maps) if not isinstance(train_maps, torch.Tensor) else train_maps)
        maps = maps.double().to(self.mean_map.device)
        if tuple(maps.shape[1:]) != self.shape:
            self._allocate(tuple(maps.shape[1:]))
        codes, pooled = self._conditions(maps, train_truth)
        self.log_floor.fill_(fit_log_floor(maps))
        scales = self.transformed(maps)
        groups = [codes == code for code in range(len(CONDITIONS))] if not pooled else [codes == 0] * 2
        for code, members in enumerate(groups):
            self.mean_map[code] = torch.stack([maps_[members].mean(dim=0) for maps_ in scales])
        for direction in self.directions:
            stats = self.line_statistics(scales, codes, direction)
            centre, scale = getattr(self, f"centre_{direction}"), getattr(self, f"scale_{direction}")
            fitted = [self._centre_scale(stats[members]) for members in groups]
            counts = [int(members.sum()) for members in groups]
            for code, (own_centre, own_scale) in enumerate(fitted if pooled else shrunk(fitted, counts)):
                centre[code], scale[code] = own_centre, own_scale
        self.pooled.fill_(pooled)
        self.fitted.fill_(True)
        return self

    def _fit_sample(self, train_maps, train_truth: list[str] | None, rows=None):
        """The train maps the statistics read: `rows` of them (default all) up to `fit_maps`, else a seeded sample of
        that many in their order (a note says so); only those are copied."""
        if rows is None and len(train_maps) <= self.config.fit_maps:
            return train_maps, train_truth
        rows = np.arange(len(train_maps)) if rows is None else np.asarray(rows)
        n, cap = len(rows), self.config.fit_maps
        if n > cap:
            rows = rows[np.sort(np.random.default_rng(0).choice(n, cap, replace=False))]
            self.notes.append(f"band detector: line statistics fitted on a seeded sample of {cap} of the {n} train "
                              f"maps (band.fit_maps)")
        index = torch.as_tensor(rows) if isinstance(train_maps, torch.Tensor) else rows
        return train_maps[index], None if train_truth is None else [train_truth[i] for i in rows]

    def _conditions(self, maps: torch.Tensor, train_truth: list[str] | None) -> tuple[torch.Tensor, bool]:
        """(condition code per train map, pooled?): the gate's assignment when per_condition and it splits train
        into two clear conditions of at least MIN_PER_CONDITION maps, else one pooled group (with a note)."""
        codes = torch.zeros(len(maps), dtype=torch.long, device=maps.device)
        if not self.uses_gate:
            return codes, True
        assigned = self.gate.assign_train(maps.float(), None, train_truth).long().to(maps.device)
        counts = {name: int((assigned == c).sum()) for c, name in enumerate(CONDITIONS)}
        bimodal, why = self.gate.intensity_split_is_clear(maps, assigned)
        if min(counts.values()) < MIN_PER_CONDITION or not bimodal:
            self.notes.append(f"band detector: gate '{self.config.gate.kind}' did not split train into two clear "
                              f"conditions of >= {MIN_PER_CONDITION} maps ({why}; counts {counts}): its line "
                              f"statistics are pooled")
            return codes, True
        self.notes.append(f"band detector: line statistics per condition ({counts}), their scales shrunk towards the "
                          f"pooled within-condition scales with weight n / (n + {SHRINK_MAPS})")
        return assigned, False

    def _centre_scale(self, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.centre_scale == "median_mad":
            centre = true_median(stats, dim=0)
            scale = 1.4826 * true_median((stats - centre).abs(), dim=0)
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
        its filters."""
        if not bool(self.fitted):
            raise RuntimeError("the band detector is not fitted: call fit() (or load a fitted checkpoint) first")
        maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).double()
        maps = maps.to(self.mean_map.device)
        self._check_shape(maps)
        route, p_warm = self.route(maps, known)
        codes = torch.zeros_like(route) if bool(self.pooled) else route
        scales = self.transformed(maps)
        out = {"rows": None, "columns": None, "route": route, "p_warm": p_warm}
        for direction in self.directions:
            centre, scale = getattr(self, f"centre_{direction}"), getattr(self, f"scale_{direction}")
            stats = self.line_statistics(scales, codes, direction)
            out[direction] = ((stats - centre[codes]) / scale[codes]).amax(dim=-1)
        return out

    @torch.no_grad()
    def score(self, maps, known: list[str] | None = None) -> dict:
        """{'scores' (N,), 'patch_maps' (N, H, W): each line drawn with its z, 'route', 'p_warm', 'band_rows' (N, H):
        each row's z (when rows are scored)} of raw maps."""
        lines = self.line_z(maps, known)
        height, width = self.shape
        per_line = torch.cat([lines[d] for d in self.directions], dim=1)
        if self.config.image_score == "top":
            k = min(self.config.top_k, per_line.shape[1])
            note = (f"band.top_k={self.config.top_k} is more than the {per_line.shape[1]} lines a map has: the image "
                    f"score is the mean of all {k}")
            if k < self.config.top_k and note not in self.notes:
                self.notes.append(note)
            scores = per_line.topk(k, dim=1).values.mean(dim=1)
        else:
            scores = per_line.amax(dim=1)
        drawn = []
        if lines["rows"] is not None:
            drawn.append(lines["rows"][:, :, None].expand(-1, height, width))
        if lines["columns"] is not None:
            drawn.append(lines["columns"][:, None, :].expand(-1, height, width))
        patch_maps = torch.stack(drawn).amax(dim=0)
        out = {"scores": scores, "patch_maps": patch_maps.float(), "route": lines["route"],
               "p_warm": lines["p_warm"].float()}
        if lines["rows"] is not None:
            out["band_rows"] = lines["rows"].float()  # each row's z: where a band is (hdmap/run/location.py)
        return out
