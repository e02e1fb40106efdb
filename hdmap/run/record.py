"""The one record of a run, whatever its kind: the metrics.json dict of a fit or a reloaded model, and the values a
search trial reports to Tune. Kinds hand over their scores, gate and notes; the keys are built here only."""
from __future__ import annotations

import math

import numpy as np
import torch

from hdmap.config import plain
from hdmap.evaluation.protocol import scored_blocks, split_summary
from hdmap.gating.gates import gate_accuracy
from hdmap.run.location import locate, row_hits


def gate_block(kind: str | None, routed: torch.Tensor | None = None, known: list[str] | None = None,
               train_assignment: str | None = None) -> dict:
    """The `gate` block: which gate routed the maps (None: no gate was used), the share routed to their known
    condition, and how the gate assigned the train maps."""
    accuracy = gate_accuracy(routed, known) if kind and routed is not None else None
    return {"kind": kind, "accuracy": accuracy, "train_assignment": train_assignment or None if kind else None}


def run_record(run, data, outputs: dict, gate: dict, notes: list[str], timing: dict,
               devices: dict | None = None, **extra) -> dict:
    """metrics.json of a run that scored `outputs['scores']` (of the test maps `outputs['index']`, all of them when
    absent): settings, data, gate, the protocol's tune and holdout blocks, notes (the data's first), the split, where
    it ran and how long each stage took; `extra` adds a kind's own blocks."""
    scores = outputs["scores"].numpy().astype(np.float64)
    scored = outputs["index"].numpy() if "index" in outputs else np.arange(len(scores))
    record = {"model": run.model_name, "domain": data.domain, "config": plain(run), "data_root": data.root,
              "gate": gate}
    record.update(scored_blocks(scores, scored, data.test_labels, data.test_conditions, data.split))
    location = location_block(outputs, data, scores, scored, record["tune"]["threshold"])
    if location is not None:
        record["location"] = location
    record["notes"] = list(data.notes) + list(notes)
    record.update(extra)
    record["test_conditions_from"] = data.condition_sources()
    record["split"] = split_summary(data.split)
    if devices is not None:
        record["devices"] = devices
    record["timing_s"] = timing
    return record


def location_block(outputs: dict, data, scores: np.ndarray, scored: np.ndarray, threshold: float) -> dict | None:
    """Where the flagged faults are said to be against where they are (data with a fault_truth.csv, every test map
    scored): the row hit rate of the holdout faults flagged at the tune threshold (hdmap/run/location.py)."""
    if not getattr(data, "fault_rows", None) or len(scored) != len(data.test_maps):
        return None
    holdout = set(np.asarray(data.split.holdout).tolist())
    picks = np.array([k for k, index in enumerate(scored) if index in holdout and data.test_labels[index] == 1
                      and scores[k] >= threshold], dtype=np.int64)
    located = locate({key: outputs[key][torch.from_numpy(picks)] for key in ("band_rows", "patch_maps")
                      if key in outputs}, data.test_maps[scored[picks]]) if len(picks) else {"row": np.array([])}
    truth = [data.fault_rows.get(int(index)) for index in scored[picks]]
    return {**row_hits(located["row"], truth), "of": "holdout faults flagged at the tune threshold",
            "row_from": "band detector's strongest row" if "band_rows" in outputs else "anomaly map's maximum"}


def tune_values(tune: dict, metric: str) -> dict:
    """What a trial reports to Tune from a `tune` block: the objective with its standard error and every metric."""
    objective = tune[metric]
    return {"objective": objective if objective is not None else -math.inf, "objective_se": tune["se"][metric],
            "tune_accuracy": tune["accuracy"], "tune_auroc": tune["auroc"], "tune_accuracy_cv": tune["accuracy_cv"]}


def trial_values(record: dict, metric: str, repeats: int = 1, feature_cache_hits: int = 0) -> dict:
    """The Tune values of a finished trial from its run record: `tune_values`, the gate's accuracy and the seconds
    of each stage."""
    timing = record.get("timing_s") or {}
    return {**tune_values(record["tune"], metric), "gate_accuracy": (record.get("gate") or {}).get("accuracy"),
            "features_s": timing.get("features", 0.0), "fit_s": timing.get("fit", 0.0),
            "predict_s": timing.get("predict", 0.0), "feature_cache_hits": feature_cache_hits, "repeats": repeats}
