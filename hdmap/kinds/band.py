"""The `band` kind: the horizontal-band matched filter (hdmap/models/band.py) on raw maps, no backbone. Fitted on
train maps only, in seconds; its checkpoint is data only. The PatchCore kinds reuse its settings for fusion
(`model.fusion`) and hand a `model.fusion=band_only` run to it (`as_band_run`)."""
from __future__ import annotations

from pathlib import Path

from hdmap.config import SPLIT_DEFAULT, plain
from hdmap.data.domain import DomainData
from hdmap.kinds.kind import ModelKind, TrialReport, trial_values
from hdmap.run.run_settings import BandRun
from hdmap.models.band import BandConfig
from hdmap.models.lightning_band import BandModel
from hdmap.run import band_pipeline


def defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    """BandConfig's defaults (the same on any data: no backbone)."""
    return {"model_name": "band", "band": plain(BandConfig()), "split": dict(SPLIT_DEFAULT)}


def validate(run: BandRun) -> None:
    """Nothing across settings beyond BandConfig's own checks (run as the settings tree was built)."""


def fit_and_score(run: BandRun, data: DomainData, cache=None, progress: bool = False, tune_only: bool = False):
    return band_pipeline.fit_and_score(run, data, tune_only)


def score_saved(path: str | Path, run: BandRun, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    model = BandModel.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return band_pipeline.score_saved_model(model, run, data)


def trial(run: BandRun, data: DomainData, cache, metric: str, repeats: int, report: TrialReport) -> None:
    """One search trial: fit on train, score the tune maps, one report."""
    model, _, metrics = fit_and_score(run, data, tune_only=True)
    values = trial_values(metrics["tune"], metric)
    values.update({"gate_accuracy": metrics["gate"]["accuracy"], "features_s": 0.0,
                   "fit_s": metrics["timing_s"]["fit"], "predict_s": metrics["timing_s"]["predict"],
                   "feature_cache_hits": 0, "repeats": 1})
    report(model, metrics, values)


BAND = ModelKind("band", "horizontal-band matched filter on raw maps (no backbone)", defaults, validate,
                 fit_and_score, score_saved, trial, settings=BandRun)
