"""Settings of PatchCore (hdmap_patchcore and the plain baseline), the plan of a fit (which train maps it reads), and the one fit of a run's input
preparation (the condition statistics these settings use)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdmap.config import plain
from hdmap.data.condition_statistics import INPUT_NORMS, ConditionStatistics
from hdmap.features.backbones import BackboneSpec
from hdmap.gating.gates import GateSettings
from hdmap.models.band import BandSettings
from hdmap.models.coreset import CORESET_METHODS
from hdmap.run.settings import InputSettings, SplitSettings
from hdmap.setting_rules import check_instance, setting

BANK_MODES = ("mixed", "gated", "soft")
REFERENCE_SAMPLINGS = ("per_condition", "uniform")
DISTANCES = ("l2", "cosine")
IMAGE_SCORES = ("max", "top")
SOFT_COMBINES = ("min", "posterior")
# none: PatchCore's image score as it is. sum / max: PatchCore's and the band detector's image scores, each
# standardised on held-out train normals, as (1 - fusion_weight) z_patchcore + fusion_weight z_band or the larger z.
# auto: max, PatchCore's z alone or the band's z alone, whichever has the best tune AUROC (chosen after scoring,
# from the same fit). band_only: the band kind alone (hdmap/kinds/band/kind.py): no backbone pass, PatchCore unused.
FUSIONS = ("none", "sum", "max", "auto", "band_only")
AUTO_CHOICES = ("max", "patchcore", "band")  # what fusion=auto chooses between, in this order on a tie


@dataclass(frozen=True)
class PatchCoreSettings:
    """Settings of the scoring model (backbone settings live with the features). These defaults are the
    documented defaults of `hdmap fit-eval` (hdmap/kinds/patchcore/kind.py builds its config from them)."""

    bank_mode: str = setting("mixed", "one mixed bank, a cold and a warm bank chosen by the gate (gated), or both "
                             "banks z-scored and combined (soft); gating never beat one mixed bank "
                             "(experiments/results/step6)", choices=BANK_MODES)
    shots: int | None = setting(None, "references per condition (2 x shots in all); null = every train map (soft "
                                "mode: all but its calibration maps); the shots curve's pick on tune AUROC "
                                "(experiments/results/shots_curve.md)", low=1)
    train_maps: int | None = setting(None, "train maps the fit reads, a seeded random sample (model.seed); null = "
                                     "all of them. A search can trade data for cost with it, and a domain of many "
                                     "thousands of maps fits on a sample", low=1)
    reference_sampling: str = setting("per_condition", "references: k per gate-assigned condition, or 2k uniformly",
                                      choices=REFERENCE_SAMPLINGS)
    local_pool: int = setting(3, "side of the local average pooling of each tap grid (PatchCore); 1 = off", low=1)
    pool_include_pad: bool = setting(True, "the local average counts zero padding (PatchCore's reference code)")
    context_ks: tuple[int, ...] = setting((0, 2), "horizontal-context offsets appended to each patch; [0] = off",
                                          items_low=0)
    bank_size: int | None = setting(10000, "members per bank in patches (at most all of them; null: coreset_ratio of "
                                    "them); the smallest bank within 0.5 tune AUROC points of the best "
                                    "(benchmarks/results/coreset_candidates.md)", low=1)
    coreset_method: str = setting("composable", "composable greedy (cost linear in the train maps) or exact greedy "
                                  "(quadratic) (hdmap/models/coreset.py)", choices=CORESET_METHODS)
    coreset_ratio: float = setting(0.1, "members per bank as a share of its patches, when bank_size is null",
                                   low=0, high=1, low_open=True)
    fit_window_mb: float = setting(512.0, "pre-coreset patches held at once per bank (MiB, float32): a bank over "
                                   "more is built window by window (composable greedy's chunk stage per window, "
                                   "greedy over the union of the picks; hdmap/models/bank_stream.py), so a fit's "
                                   "memory does not grow with the train maps; a bank that fits is the same bank",
                                   low=0, low_open=True)
    projection_dim: int | None = setting(64, "the coreset's distances on a seeded random projection of this width; "
                                         "null = the full width (benchmarks/results/coreset_candidates.md)", low=1)
    reweight_k: int = setting(9, "PatchCore's neighbourhood re-weighting of the image score (image_score max); 1 = "
                              "off", low=1)
    distance: str = setting("l2", "patch distance: l2, or cosine (L2 on unit vectors)", choices=DISTANCES)
    image_score: str = setting("top", "image score: the largest patch distance (max) or the mean of the top_fraction "
                               "largest (top, AnomalyDINO)", choices=IMAGE_SCORES)
    top_fraction: float = setting(0.01, "image_score top: the share of patches averaged", low=0, high=1,
                                  low_open=True)
    soft_combine: str = setting("min", "soft mode: the smaller z-score, or the gate-weighted mean (posterior)",
                                choices=SOFT_COMBINES)
    calibration_maps: int = setting(16, "held-out train normals per condition for soft-mode z-scores (and twice as "
                                    "many for fusion)", low=2)
    input_norm: str = setting("percentile", "condition-invariant inputs (hdmap/data/condition_statistics.py); p50 "
                              "scaling + band descriptor 2 was at least as good as one mixed bank on every synthetic "
                              "set (experiments/results/step6_invariant_inputs.md)", choices=INPUT_NORMS)
    norm_percentile: float = setting(50.0, "input_norm percentile: each map divided by this percentile of itself",
                                     low=0, high=100, low_open=True)
    band_weight: float = setting(2.0, "weight of the band-descriptor channel appended to the embedding; 0 = off",
                                 low=0)
    band_window: float = setting(0.25, "horizontal window of the band descriptor, as a fraction of the columns",
                                 low=0, high=1, low_open=True)
    gate_fallback: bool = setting(True, "a gate whose train split is not clearly bimodal falls back to one mixed "
                                  "bank (recorded in the run's notes)")
    fusion: str = setting("auto", "PatchCore alone (none), fused with the band detector's score (sum, max: each "
                          "standardised on held-out train normals), whichever of max, PatchCore's z and the band z "
                          "has the best tune AUROC (auto: one fit, chosen after scoring), or the band detector alone "
                          "(band_only); auto: experiments/results/band_families.md", choices=FUSIONS)
    fusion_weight: float = setting(0.5, "fusion sum: the band z's weight", low=0, high=1)
    band: BandSettings = setting(help="the band detector of fusion (and of band_only)", factory=BandSettings)
    seed: int = setting(0, "seed of the references, the coreset's start and projection", low=0)
    gate: GateSettings = setting(help="the cold/warm gate", factory=GateSettings)

    def __post_init__(self):
        if isinstance(self.gate, dict):
            object.__setattr__(self, "gate", GateSettings(**self.gate))
        if isinstance(self.band, dict):
            object.__setattr__(self, "band", BandSettings(**self.band))
        object.__setattr__(self, "context_ks", tuple(self.context_ks) if not isinstance(self.context_ks, int)
                           else (self.context_ks,))
        check_instance(self)

    def condition_statistics(self) -> ConditionStatistics | None:
        """The (unfitted) train-normal statistics these settings use, for the input normalisation and the band
        descriptor; None when they use neither."""
        if self.input_norm == "none" and self.band_weight <= 0:
            return None
        return ConditionStatistics(self.input_norm, self.norm_percentile, self.gate.percentile, self.band_window)

    @property
    def fused(self) -> bool:
        """Whether the image score fuses PatchCore's with the band detector's (sum or max)."""
        return self.fusion in ("sum", "max", "auto")

    def to_dict(self) -> dict:
        return plain(self)



@dataclass
class FitPlan:
    """Which train maps a fit uses: references (with their condition codes) and soft-mode calibration maps."""

    references: np.ndarray
    reference_codes: np.ndarray
    calibration: np.ndarray
    calibration_codes: np.ndarray



def fit_condition_stats(config: PatchCoreSettings, train_maps) -> ConditionStatistics | None:
    """The one fit of a run's condition statistics (of the train normals), on train maps only;
    the pipeline hands the result to the feature cache and to `plan_fit`. None when the settings need none."""
    statistics = config.condition_statistics()
    return None if statistics is None else statistics.fit(train_maps)


@dataclass(frozen=True)
class PatchCoreRun(InputSettings):
    """`hdmap_patchcore` and `patchcore` runs."""

    model_name: str = setting("hdmap_patchcore", "the model kind", choices=("hdmap_patchcore", "patchcore"))
    backbone: BackboneSpec = setting(help="the frozen feature extractor", factory=BackboneSpec)
    model: PatchCoreSettings = setting(help="the scoring model", factory=PatchCoreSettings)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)
