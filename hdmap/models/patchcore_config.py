"""Settings of (gated) PatchCore, the plan of a fit (which train maps it reads), and the one fit of a run's input
preparation (the condition statistics these settings use)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hdmap.config import plain
from hdmap.data.condition_statistics import INPUT_NORMS, ConditionStatistics
from hdmap.gating.gates import GateConfig
from hdmap.models.band import BandConfig
from hdmap.models.coreset import CORESET_METHODS

BANK_MODES = ("mixed", "gated", "soft")
# none: PatchCore's image score as it is. sum / max: PatchCore's and the band detector's image scores, each
# standardised on held-out train normals, as (1 - fusion_weight) z_patchcore + fusion_weight z_band or the larger z.
# band_only: the band kind alone (hdmap/kinds/band.py): no backbone pass, the PatchCore settings unused.
FUSIONS = ("none", "sum", "max", "band_only")


@dataclass
class PatchCoreConfig:
    """Settings of the scoring model (backbone settings live with the features). These defaults are the
    documented defaults of `hdmap fit-eval` (hdmap/kinds/patchcore.py builds its config from them)."""

    bank_mode: str = "mixed"  # mixed | gated | soft (gating never beat one mixed bank: experiments/results/step6)
    # references per condition (2 x shots in all); None = every train map (soft mode: all but its calibration maps).
    # Default: all of train with a 10 % coreset and the mean of the top 1 % patch distances: the shots curve's pick
    # on tune AUROC (86.9 % against 85.5 % for 16 shots with the max; experiments/results/shots_curve.md)
    shots: int | None = None
    reference_sampling: str = "per_condition"  # per_condition (k per gate-assigned condition) | uniform (2k)
    local_pool: int = 3
    pool_include_pad: bool = True  # local average counts zero padding (PatchCore reference behaviour)
    context_ks: tuple[int, ...] = (0, 2)  # horizontal-context k values; (0,) = off
    # members per bank in patches (at most all of them; None: coreset_ratio of them), chosen by composable greedy (cost
    # linear in the train maps; exact greedy's is quadratic): the smallest bank whose mean tune AUROC was within 0.5
    # points of the best candidate, exact greedy included (benchmarks/results/coreset_candidates.md)
    bank_size: int | None = 10000
    coreset_method: str = "composable"  # composable | greedy (exact) (hdmap/models/coreset.py)
    coreset_ratio: float = 0.1  # members per bank as a share of its patches, when bank_size is None
    # the coreset's distances on a seeded random projection: 64 covers as 128 does and reads half the bytes a pick
    # (benchmarks/results/coreset_candidates.md)
    projection_dim: int | None = 64
    reweight_k: int = 9  # PatchCore neighbourhood re-weighting; 1 = off
    distance: str = "l2"  # l2 | cosine (L2 on unit vectors)
    image_score: str = "top"  # max | top (mean of the top_fraction largest patch distances)
    top_fraction: float = 0.01
    soft_combine: str = "min"  # min of z-scores | posterior (gate-weighted z-scores)
    calibration_maps: int = 16  # held-out train normals per condition for soft-mode z-scores
    # condition-invariant inputs (hdmap/data/condition_statistics.py): none | percentile | condition | row_profile.
    # Default p50 scaling + band descriptor 2: at least as good as one mixed bank on every synthetic set and
    # +7 AUROC points on faint cold faults (experiments/results/step6_invariant_inputs.md)
    input_norm: str = "percentile"
    norm_percentile: float = 50.0  # p of input_norm=percentile
    band_weight: float = 2.0  # weight of the band-descriptor channel appended to the embedding; 0 = off
    band_window: float = 0.25  # horizontal window of the band descriptor, as a fraction of the columns
    gate_fallback: bool = True  # a gate whose train split is not clearly bimodal falls back to one mixed bank
    # Default max: the best mean tune AUROC of none / sum / max on eight synthetic sets, six with band faults and two
    # with defects that are not bands (experiments/results/band_vs_patchcore.md)
    fusion: str = "max"  # none | sum | max | band_only (FUSIONS above)
    fusion_weight: float = 0.5  # weight of the band z in fusion=sum
    band: BandConfig = field(default_factory=BandConfig)  # the band detector of fusion (and of band_only)
    seed: int = 0
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self):
        if isinstance(self.gate, dict):
            self.gate = GateConfig(**self.gate)
        if isinstance(self.band, dict):
            self.band = BandConfig(**self.band)
        self.context_ks = tuple(self.context_ks) if not isinstance(self.context_ks, int) else (self.context_ks,)
        checks = {"input_norm": INPUT_NORMS, "bank_mode": BANK_MODES, "reference_sampling": ("per_condition", "uniform"),
                  "distance": ("l2", "cosine"), "image_score": ("max", "top"), "soft_combine": ("min", "posterior"),
                  "fusion": FUSIONS, "coreset_method": CORESET_METHODS}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not 0 < self.norm_percentile <= 100:
            raise ValueError(f"norm_percentile must lie in (0, 100], got {self.norm_percentile}")
        if self.band_weight < 0 or not 0 < self.band_window <= 1:
            raise ValueError(f"band_weight must be >= 0 and band_window in (0, 1], got {self.band_weight}, "
                             f"{self.band_window}")
        if not 0 <= self.fusion_weight <= 1:
            raise ValueError(f"fusion_weight must lie in [0, 1], got {self.fusion_weight}")
        if self.bank_size is not None and self.bank_size < 1:
            raise ValueError(f"bank_size must be >= 1 patch or None (coreset_ratio), got {self.bank_size}")
        if self.shots is not None and self.shots < 1:
            raise ValueError(f"shots must be >= 1 or None (all of train), got {self.shots}")

    def condition_statistics(self) -> ConditionStatistics | None:
        """The (unfitted) train-normal statistics these settings use, for the input normalisation and the band
        descriptor; None when they use neither."""
        if self.input_norm == "none" and self.band_weight <= 0:
            return None
        return ConditionStatistics(self.input_norm, self.norm_percentile, self.gate.percentile, self.band_window)

    @property
    def fused(self) -> bool:
        """Whether the image score fuses PatchCore's with the band detector's (sum or max)."""
        return self.fusion in ("sum", "max")

    def to_dict(self) -> dict:
        return plain(self)



@dataclass
class FitPlan:
    """Which train maps a fit uses: references (with their condition codes) and soft-mode calibration maps."""

    references: np.ndarray
    reference_codes: np.ndarray
    calibration: np.ndarray
    calibration_codes: np.ndarray



def fit_input_preparation(config: PatchCoreConfig, train_maps) -> ConditionStatistics | None:
    """The one fit of a run's input preparation (condition statistics of the train normals), on train maps only;
    the pipeline hands the result to the feature cache and to `plan_fit`. None when the settings need none."""
    statistics = config.condition_statistics()
    return None if statistics is None else statistics.fit(train_maps)
