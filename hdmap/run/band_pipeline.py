"""The band detector on one domain: the fit function and the score function that `hdmap fit-eval`, the Tune
trainable and `hdmap eval` call through the band kind (hdmap/kinds/band.py). No backbone and no feature cache:
it reads the raw maps, fits in seconds on a CPU and scores every map on its own."""
from __future__ import annotations

import time

import numpy as np
import torch

from hdmap.config import plain
from hdmap.data.domain import DomainData
from hdmap.evaluation.protocol import scored_blocks, split_summary
from hdmap.gating.gates import gate_accuracy
from hdmap.run.run_settings import BandRun
from hdmap.models.lightning_band import BandModel


def build_model(run: BandRun, data: DomainData) -> BandModel:
    """The Lightning model, given only its band settings."""
    return BandModel(plain(run.band), tuple(data.train_maps.shape[1:]))


def score_maps(model: BandModel, data: DomainData, tune_only: bool = False, batch: int = 512) -> dict:
    """{'scores', 'patch_maps', 'route', 'p_warm', 'index'} of the test maps (the tune maps only with `tune_only`),
    in test order."""
    indices = np.asarray(data.split.tune if tune_only else np.arange(len(data.test_maps)), dtype=np.int64)
    known = data.test_conditions  # only the oracle gate reads them
    parts = []
    for start in range(0, len(indices), batch):
        chosen = indices[start:start + batch]
        parts.append(model.score(data.test_maps[chosen], [known[i] for i in chosen]))
    merged = {key: torch.cat([p[key] for p in parts]).cpu() for key in parts[0]}
    merged["index"] = torch.from_numpy(indices)
    return merged


def metrics_of(run: BandRun, data: DomainData, outputs: dict, model: BandModel) -> dict:
    scores = outputs["scores"].numpy().astype(np.float64)
    scored = outputs["index"].numpy()
    core = model.core
    kind = core.config.gate.kind if core.uses_gate else None
    metrics = {"model": run.model_name, "domain": data.domain, "config": plain(run), "data_root": data.root,
               "gate": {"kind": kind, "train_assignment": core.gate.train_source or None if kind else None,
                        "accuracy": gate_accuracy(outputs["route"], [data.test_conditions[i] for i in scored])
                        if kind else None}}
    metrics.update(scored_blocks(scores, scored, data.test_labels, data.test_conditions, data.split))
    metrics["notes"] = list(data.notes) + list(core.notes)
    metrics["test_conditions_from"] = data.condition_sources()
    metrics["split"] = split_summary(data.split)
    metrics["devices"] = {"band": str(model.device_used)}
    return metrics


def fit_and_score(run: BandRun, data: DomainData, tune_only: bool = False) -> tuple[BandModel, dict, dict]:
    """(fitted model, outputs, metrics.json dict); fitted on the train maps only."""
    start = time.perf_counter()
    model = build_model(run, data).fit(data.train_maps, data.train_truth)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = score_maps(model, data, tune_only)
    metrics = metrics_of(run, data, outputs, model)
    metrics["timing_s"] = {"features": 0.0, "fit": fit_s, "predict": time.perf_counter() - start}
    return model, outputs, metrics


def score_saved_model(model: BandModel, run: BandRun, data: DomainData) -> tuple[dict, dict]:
    start = time.perf_counter()
    outputs = score_maps(model, data)
    metrics = metrics_of(run, data, outputs, model)
    metrics["timing_s"] = {"features": 0.0, "fit": 0.0, "predict": time.perf_counter() - start}
    return outputs, metrics
