"""The band detector on one domain: the fit function and the score function that `hdmap fit-eval`, the Tune
trainable and `hdmap eval` call through the band kind (hdmap/kinds/band/kind.py). No backbone and no feature cache:
it reads the raw maps, fits in seconds on a CPU and scores every map on its own."""
from __future__ import annotations

import time

import numpy as np
import torch

from hdmap.config import plain
from hdmap.data.domain import DomainData
from hdmap.kinds.band.settings import BandRun
from hdmap.kinds.band.module import BandModule
from hdmap.run.record import gate_block, run_record


def build_model(run: BandRun, data: DomainData) -> BandModule:
    """The Lightning model, given only its band settings."""
    return BandModule(plain(run.band), tuple(data.train_maps.shape[1:]))


def score_maps(model: BandModule, data: DomainData, tune_only: bool = False, batch: int = 512) -> dict:
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


def metrics_of(run: BandRun, data: DomainData, outputs: dict, model: BandModule, timing: dict) -> dict:
    """The run record (hdmap/run/record.py)."""
    core = model.core
    kind = core.config.gate.kind if core.uses_gate else None
    scored = outputs["index"].numpy()
    gate = gate_block(kind, outputs["route"], [data.test_conditions[i] for i in scored], core.gate.train_source)
    return run_record(run, data, outputs, gate, core.notes, timing, {"band": str(model.device_used)})


def fit_and_score(run: BandRun, data: DomainData, tune_only: bool = False) -> tuple[BandModule, dict, dict]:
    """(fitted model, outputs, metrics.json dict); fitted on the train maps only."""
    start = time.perf_counter()
    model = build_model(run, data).fit(data.train_maps, data.train_truth)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = score_maps(model, data, tune_only)
    timing = {"features": 0.0, "fit": fit_s, "predict": time.perf_counter() - start}
    return model, outputs, metrics_of(run, data, outputs, model, timing)


def score_saved_model(model: BandModule, run: BandRun, data: DomainData) -> tuple[dict, dict]:
    start = time.perf_counter()
    outputs = score_maps(model, data)
    return outputs, metrics_of(run, data, outputs, model, {"features": 0.0, "fit": 0.0,
                                                           "predict": time.perf_counter() - start})
