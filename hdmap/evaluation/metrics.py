"""AUROC, AP, F1 and accuracy; thresholds chosen on tune, applied to holdout; per-condition breakdown.

A map is called a fault when its score is >= the threshold.
"""
from __future__ import annotations

import math

import numpy as np

from hdmap.condition_names import CONDITIONS


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    return scores, labels


def auroc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); NaN when a class is missing."""
    scores, labels = _check(scores, labels)
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores, labels) -> float:
    """AP = sum over distinct thresholds of (recall step) x precision, as scikit-learn defines it."""
    scores, labels = _check(scores, labels)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_pos = np.cumsum(labels)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy_at(scores, labels, threshold: float) -> float:
    scores, labels = _check(scores, labels)
    return float(np.mean((scores >= threshold).astype(int) == labels)) if len(labels) else math.nan


def f1_at(scores, labels, threshold: float) -> float:
    scores, labels = _check(scores, labels)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    fp, fn = int(np.sum(predicted & (labels == 0))), int(np.sum(~predicted & (labels == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan


def best_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy: the middle of the best-accuracy plateau.

    Candidates are midpoints between distinct scores, and one below / above all at half the outermost gap (so the
    threshold scales with the scores' units: scores x 1000 give the threshold x 1000 and the same decisions). The
    candidates that reach the best accuracy form runs; the longest run (the first if several are as long) is the
    plateau, and its middle is the threshold, so it is not pushed to the plateau's edge next to a tune score."""
    scores, labels = _check(scores, labels)
    distinct = np.unique(scores)
    if len(distinct) > 1:
        below, above = (distinct[1] - distinct[0]) / 2.0, (distinct[-1] - distinct[-2]) / 2.0
    else:  # one score value: a step of its own size (or 1 for a score of 0)
        below = above = abs(float(distinct[0])) / 2.0 or 0.5
    candidates = np.r_[distinct[0] - below, (distinct[:-1] + distinct[1:]) / 2.0, distinct[-1] + above]
    correct = (scores[:, None] >= candidates[None, :]) == (labels[:, None] == 1)
    accuracies = correct.mean(axis=0)
    at_best = np.flatnonzero(accuracies == accuracies.max())
    runs = np.split(at_best, np.flatnonzero(np.diff(at_best) > 1) + 1)
    plateau = max(runs, key=len)
    threshold = (candidates[plateau[0]] + candidates[plateau[-1]]) / 2.0
    return float(threshold), float(accuracies.max())


def _nan_to_none(value: float):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def condition_breakdown(scores, labels, conditions, threshold: float) -> dict:
    """AUROC and accuracy (at `threshold`) per condition, plus cold faults against warm goods."""
    scores, labels, conditions = np.asarray(scores), np.asarray(labels), np.asarray(conditions)
    out = {}
    for condition in CONDITIONS:
        part = conditions == condition
        if part.any():
            out[condition] = {"auroc": _nan_to_none(auroc(scores[part], labels[part])),
                              "accuracy": accuracy_at(scores[part], labels[part], threshold), "n": int(part.sum())}
    hard = ((conditions == "cold") & (labels == 1)) | ((conditions == "warm") & (labels == 0))
    if hard.any():
        out["cold_fault_vs_warm_good"] = {"auroc": _nan_to_none(auroc(scores[hard], labels[hard])),
                                          "accuracy": accuracy_at(scores[hard], labels[hard], threshold),
                                          "n": int(hard.sum())}
    return out


def macro_average(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over categories (NaN/None entries skipped)."""
    keys = {k for metrics in per_category.values() for k in metrics}
    out = {}
    for key in sorted(keys):
        values = [m[key] for m in per_category.values() if m.get(key) is not None and not math.isnan(m[key])]
        out[key] = float(np.mean(values)) if values else math.nan
    return out
