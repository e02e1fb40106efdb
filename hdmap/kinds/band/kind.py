"""The `band` kind: the horizontal-band matched filter (hdmap/models/band.py, shared with PatchCore's fusion) on raw
maps, no backbone. Fitted on train maps only, in seconds; its checkpoint is data only. A PatchCore run with
`model.fusion=band_only` is handed to this kind by the registry."""
from __future__ import annotations

from pathlib import Path

import torch

from hdmap.config import SPLIT_DEFAULT, plain
from hdmap.data.domain import DomainData
from hdmap.kinds.band import pipeline
from hdmap.kinds.band.module import BandModule
from hdmap.kinds.band.settings import BandRun
from hdmap.kinds.kind import ModelKind, TrialReport
from hdmap.models.band import BandSettings, legacy_band_settings
from hdmap.run.record import trial_values


def defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    """BandSettings's defaults (the same on any data: no backbone)."""
    return {"model_name": "band", "band": plain(BandSettings()), "split": dict(SPLIT_DEFAULT)}


def validate(run: BandRun) -> None:
    """Nothing across settings beyond BandSettings's own checks (run as the settings tree was built)."""


def upgrade(config: dict) -> dict:
    """A run config recorded before the band filter family: its one filter, as it ran."""
    return {**config, "band": legacy_band_settings(config.get("band") or {})}


def fit_and_score(run: BandRun, data: DomainData, cache=None, progress: bool = False, tune_only: bool = False):
    return pipeline.fit_and_score(run, data, tune_only)


def score_saved(path: str | Path, run: BandRun, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    return pipeline.score_saved_model(load_saved(path, run), run, data)


def load_saved(path: str | Path, run: BandRun) -> BandModule:
    return BandModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def predict(module: BandModule, run: BandRun, maps, paths: list[str], cache, device, domain=None) -> dict:
    """Outputs of new maps (`hdmap predict`), scored on `device`."""
    module.to(device)
    out = {key: value.cpu() for key, value in module.core.score(torch.from_numpy(maps)).items()}
    if not module.core.uses_gate:
        out["route"] = None
    return out


def trial(run: BandRun, data: DomainData, cache, metric: str, repeats: int, report: TrialReport) -> None:
    """One search trial: fit on train, score the tune maps, one report."""
    model, _, metrics = fit_and_score(run, data, tune_only=True)
    report(model, metrics, trial_values(metrics, metric))


BAND = ModelKind("band", "horizontal-band matched filter on raw maps (no backbone)", defaults, validate,
                 fit_and_score, score_saved, trial, settings=BandRun, upgrade=upgrade, load_saved=load_saved,
                 predict=predict,
                 docs_note="The band detector alone; PatchCore's `model.band` is the same tree.")
