"""Condition statistics of the train normals, for condition-invariant inputs and the band descriptor.

The input preparation of a PatchCore run: fitted once, on train maps only (`fit`), by the run's pipeline, then
handed to the feature cache (which normalises maps with it before the backbone) and to the model (band descriptor,
carried in its checkpoint). Afterwards every map is transformed on its own (its condition comes from
the same intensity split the gate uses, applied to that map), so no test statistic ever enters.

Input normalisations (before the backbone), `input_norm`:
- `none`
- `percentile`: each map divided by its own p-th percentile (p = `norm_percentile`), times the train median of
  that percentile (keeps the backbone's input range)
- `condition`: (x - mean_c) / std_c * std_train + mean_train, with mean_c / std_c the pixel statistics of the
  train normals of the map's condition c
- `row_profile`: each row divided by the median of that row over the train normals of condition c, times the
  train median pixel (removes the warm/cold shift row by row)

Band descriptor (an extra embedding channel): the map's local row energy (mean over a horizontal window)
relative to condition c's train row profile, log, z-scored per row with condition c's train statistics.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from hdmap.resizable_buffers import ResizableBuffers
from hdmap.statistics import is_bimodal, map_percentile, two_means_1d

INPUT_NORMS = ("none", "percentile", "condition", "row_profile")
FIT_MAPS = 4096  # train maps the pixel statistics are fitted on at most (a seeded sample beyond, noted)

class ConditionStatistics(ResizableBuffers):
    """Per-condition statistics of train normals (buffers: checkpoints carry them)."""

    def __init__(self, input_norm: str = "none", norm_percentile: float = 90.0, gate_percentile: float = 90.0,
                 band_window: float = 0.25):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.input_norm, self.norm_percentile = input_norm, norm_percentile
        self.gate_percentile, self.band_window = gate_percentile, band_window
        self.register_buffer("threshold", torch.tensor(float("inf")))  # intensity split; inf = one condition
        self.register_buffer("percentile_scale", torch.tensor(1.0))
        self.register_buffer("pixel", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))  # (condition, [mean, std])
        self.register_buffer("pixel_all", torch.tensor([0.0, 1.0]))
        self.register_buffer("median_all", torch.tensor(1.0))
        self.register_buffer("row_profile", torch.ones(2, 1))  # (condition, rows)
        self.register_buffer("band_stats", torch.zeros(2, 2, 1))  # (condition, [mean, std], rows)
        self.notes: list[str] = []

    @property
    def fitted(self) -> bool:
        return bool(self.row_profile.shape[1] > 1)

    def condition_of(self, maps: torch.Tensor) -> torch.Tensor:
        """0 cold / 1 warm per map from its own intensity percentile (one condition when train was not bimodal)."""
        return (map_percentile(maps, self.gate_percentile) > self.threshold.to(maps.device)).long()

    @property
    def changes_inputs(self) -> bool:
        """Does `normalise` change the maps the backbone sees (so feature-cache keys must include it)?"""
        return self.input_norm != "none"

    @torch.no_grad()
    def fit(self, train_maps) -> "ConditionStatistics":
        """Fit on train maps (all of them, never a test map)."""
        maps = torch.as_tensor(np.asarray(train_maps)).float()
        self.notes = []
        stat = map_percentile(maps, self.gate_percentile)
        low, high = two_means_1d(stat)
        threshold = torch.tensor((low + high) / 2)
        split = (stat > threshold).long()
        bimodal, why = is_bimodal(stat, split)
        if not bimodal:
            threshold = torch.tensor(float("inf"))
            self.notes.append(f"condition statistics: train intensity is not bimodal ({why}); one set of "
                              f"statistics for all maps")
        self.threshold = threshold
        self.percentile_scale = map_percentile(maps, self.norm_percentile).median()
        maps = self._pixel_sample(maps)
        codes = self.condition_of(maps)
        self.pixel_all = torch.stack([maps.mean(), maps.std().clamp_min(1e-6)])
        self.median_all = maps.median()
        pixel, profiles, band = [], [], []
        for code in (0, 1):
            members = maps[codes == code] if (codes == code).any() else maps  # one condition: shared statistics
            pixel.append(torch.stack([members.mean(), members.std().clamp_min(1e-6)]))
            profile = members.median(dim=2).values.median(dim=0).values.clamp_min(1e-6)  # (rows,)
            profiles.append(profile)
            energy = self._log_energy(members, profile)  # (n, rows, cols)
            band.append(torch.stack([energy.mean(dim=(0, 2)), energy.std(dim=(0, 2)).clamp_min(1e-6)]))
        self.pixel, self.row_profile, self.band_stats = torch.stack(pixel), torch.stack(profiles), torch.stack(band)
        return self

    def _pixel_sample(self, maps: torch.Tensor) -> torch.Tensor:
        """The maps the pixel, row and band statistics read: all up to FIT_MAPS, else a seeded sample of that many
        (said in the notes): their full-size temporaries would otherwise grow with a 100,000-map domain. The gate
        threshold and the percentile scale use every map (one value each)."""
        if len(maps) <= FIT_MAPS:
            return maps
        picked = np.sort(np.random.default_rng(0).choice(len(maps), FIT_MAPS, replace=False))
        self.notes.append(f"condition statistics: pixel, row and band statistics from a seeded sample of {FIT_MAPS} "
                          f"of the {len(maps)} train maps")
        return maps[torch.as_tensor(picked)]

    def _log_energy(self, maps: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        """log of the local row energy (horizontal window mean) relative to a row profile: (n, rows, cols)."""
        width = max(1, int(round(self.band_window * maps.shape[-1])) | 1)  # odd
        local = F.avg_pool1d(maps.flatten(0, 1)[:, None], width, stride=1, padding=width // 2,
                             count_include_pad=False).view(maps.shape)
        return torch.log(local.clamp_min(1e-6) / profile[:, None])

    def _check(self, maps: torch.Tensor) -> None:
        if not self.fitted:
            raise RuntimeError("condition statistics are not fitted: call fit(train_maps) first")
        if maps.shape[-2] != self.row_profile.shape[1]:
            raise ValueError(f"maps have {maps.shape[-2]} rows, the statistics were fitted on "
                             f"{self.row_profile.shape[1]}")

    @torch.no_grad()
    def normalise(self, maps: torch.Tensor) -> torch.Tensor:
        """The `input_norm` transform of (N, H, W) maps, each map on its own. Values are scaled, never clipped."""
        if self.input_norm == "none":
            return maps
        maps = maps.float()
        self._check(maps)
        if self.input_norm == "percentile":
            own = map_percentile(maps, self.norm_percentile).clamp_min(1e-6)
            return maps / own[:, None, None] * self.percentile_scale
        codes = self.condition_of(maps)
        if self.input_norm == "condition":
            mean, std = self.pixel[codes, 0], self.pixel[codes, 1]
            return (maps - mean[:, None, None]) / std[:, None, None] * self.pixel_all[1] + self.pixel_all[0]
        return maps / self.row_profile[codes][:, :, None] * self.median_all  # row_profile

    @torch.no_grad()
    def band_channel(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, 1, h, w) band evidence at the embedding's grid size: per-row z-score of the local row energy,
        max over the map rows and mean over the map columns that fall in each grid cell."""
        maps = maps.float()
        self._check(maps)
        codes = self.condition_of(maps)
        energy = torch.stack([self._log_energy(m[None], self.row_profile[c])[0] for m, c in zip(maps, codes)])
        stats = self.band_stats[codes]  # (N, 2, rows)
        z = (energy - stats[:, 0, :, None]) / stats[:, 1, :, None]
        z = F.adaptive_avg_pool2d(z[:, None], (maps.shape[-2], size[1]))  # columns -> grid columns
        return F.adaptive_max_pool2d(z, size)  # rows -> grid rows: the strongest row counts

    def identity(self) -> dict:
        """What a feature-cache key must change with: the transform and a digest of the fitted statistics."""
        digest = hashlib.sha256()
        for name in ("threshold", "percentile_scale", "pixel", "pixel_all", "median_all", "row_profile"):
            digest.update(getattr(self, name).detach().cpu().double().numpy().tobytes())
        return {"input_norm": self.input_norm, "norm_percentile": self.norm_percentile,
                "gate_percentile": self.gate_percentile, "stats": digest.hexdigest()[:16]}
