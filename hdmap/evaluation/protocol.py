"""The protocol's numbers (DESIGN section 2): tune metrics with their standard errors and the cross-fitted
accuracy, then holdout metrics at the tune threshold with bootstrap intervals."""
from __future__ import annotations

import numpy as np

from hdmap.evaluation.metrics import (_nan_to_none, accuracy_at, auroc, average_precision, best_threshold,
                                      condition_breakdown, f1_at)
from hdmap.evaluation.uncertainty import accuracy_cv, holdout_intervals, objective_se, strata_of

TUNE_METRICS = ("accuracy", "auroc", "accuracy_cv")


def tune_metrics(scores, labels, conditions=None) -> dict:
    """The `tune` block: AUROC, best accuracy and its threshold on the tune maps, the cross-fitted accuracy
    (`accuracy_cv`, thresholds from the other half of the tune maps) and the standard error of each."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    threshold, accuracy = best_threshold(scores, labels)
    strata = strata_of(labels, None if conditions is None else list(conditions))
    values = {"auroc": _nan_to_none(auroc(scores, labels)), "accuracy": accuracy, "threshold": threshold,
              "accuracy_cv": accuracy_cv(scores, labels, strata), "n": int(len(labels))}
    values["se"] = {m: _nan_to_none(objective_se(m, values, labels)) if values[m] is not None else None
                    for m in TUNE_METRICS}
    return values


def protocol_metrics(scores, labels, conditions, tune_idx, holdout_idx) -> dict:
    """The `tune` and `holdout` blocks of metrics.json: threshold from tune, applied unchanged to holdout; holdout
    accuracy and AUROC carry 95 % bootstrap intervals (overall and per condition)."""
    scores, labels, conditions = np.asarray(scores, float), np.asarray(labels, int), np.asarray(conditions)
    tune_idx, holdout_idx = np.asarray(tune_idx, int), np.asarray(holdout_idx, int)
    if len(tune_idx) == 0 or len(holdout_idx) == 0:
        raise ValueError("both the tune and the holdout split need at least one map")
    tune = tune_metrics(scores[tune_idx], labels[tune_idx], conditions[tune_idx])
    threshold = tune["threshold"]
    hs, hl, hc = scores[holdout_idx], labels[holdout_idx], conditions[holdout_idx]
    return {
        "tune": tune,
        "holdout": {
            "auroc": _nan_to_none(auroc(hs, hl)), "ap": _nan_to_none(average_precision(hs, hl)),
            "f1": _nan_to_none(f1_at(hs, hl, threshold)), "accuracy": accuracy_at(hs, hl, threshold),
            "accuracy_oracle": best_threshold(hs, hl)[1], "n": int(len(holdout_idx)),
            "by_condition": condition_breakdown(hs, hl, hc, threshold),
            "intervals": holdout_intervals(hs, hl, hc, threshold),
        },
    }


TUNE_ONLY = "tune maps only (a search trial; holdout is scored for the best trial)"


def scored_blocks(scores, scored, labels, conditions, split) -> dict:
    """The metrics.json blocks of a run that scored the test maps `scored` (indices): tune and holdout when it
    scored all of them (`protocol_metrics` on `split`), else, a search trial, the tune block of those maps only."""
    labels = np.asarray(labels)
    if len(scored) == len(labels):
        return protocol_metrics(scores, labels, conditions, split.tune, split.holdout)
    return {"tune": tune_metrics(scores, labels[scored], [conditions[i] for i in scored]), "holdout": None,
            "scored": TUNE_ONLY}


def split_summary(split) -> dict:
    """The `split` block of metrics.json: seed, tune fraction and sizes of a TestSplit."""
    return {"seed": split.seed, "tune_fraction": split.tune_fraction, "n_tune": len(split.tune),
            "n_holdout": len(split.holdout)}
