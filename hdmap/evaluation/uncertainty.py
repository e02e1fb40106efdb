"""How uncertain a number is: standard errors, cross-fitted accuracy (a threshold never set on the map it judges),
seeded stratified bootstrap intervals, and paired tests of two runs scored on the same maps."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest, rankdata

from hdmap.condition_names import CONDITIONS
from hdmap.evaluation.metrics import auroc, best_threshold

CV_REPEATS = 5  # seeded stratified half splits of the tune maps behind accuracy_cv
N_BOOT = 1000
LEVEL = 0.95


def strata_of(labels, conditions=None) -> np.ndarray:
    """One stratum code per map: label x condition (label alone without conditions)."""
    labels = np.asarray(labels, int)
    if conditions is None:
        return labels
    names = {name: code for code, name in enumerate(sorted(set(conditions)))}
    return labels * len(names) + np.array([names[c] for c in conditions])


def accuracy_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy on n maps, Agresti-Coull style (two right and two wrong maps added), so that
    0 % and 100 % on a few maps do not read as certain: 100 % on 60 maps gives 2.2 points, 98 % on 600 gives 0.6."""
    if not n:
        return math.nan
    adjusted = (accuracy * n + 2) / (n + 4)
    return math.sqrt(adjusted * (1 - adjusted) / (n + 4))


def auroc_se(value: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUROC."""
    if not n_pos or not n_neg or value is None or math.isnan(value):
        return math.nan
    q1, q2 = value / (2 - value), 2 * value ** 2 / (1 + value)
    variance = (value * (1 - value) + (n_pos - 1) * (q1 - value ** 2) + (n_neg - 1) * (q2 - value ** 2))
    return math.sqrt(max(variance, 0.0) / (n_pos * n_neg))


def half_splits(strata: np.ndarray, repeats: int, seed: int) -> list[np.ndarray]:
    """`repeats` boolean masks (True = first half), each a seeded split of every stratum into two halves."""
    masks = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        first = np.zeros(len(strata), bool)
        for stratum in np.unique(strata):
            members = rng.permutation(np.flatnonzero(strata == stratum))
            first[members[: (len(members) + rng.integers(2)) // 2]] = True  # odd strata: the extra map at random
        masks.append(first)
    return masks


def cross_fitted_thresholds(scores, labels, strata=None, repeats: int = CV_REPEATS, seed: int = 0) -> np.ndarray:
    """(repeats, n) thresholds: in each split, the threshold applied to a map is the best-accuracy threshold of the
    OTHER half, so no map's own label ever sets the threshold that judges it."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    strata = labels if strata is None else np.asarray(strata)
    thresholds = np.empty((repeats, len(scores)))
    for row, first in enumerate(half_splits(strata, repeats, seed)):
        for judged, fitted in ((first, ~first), (~first, first)):
            if judged.any():
                thresholds[row, judged] = best_threshold(scores[fitted], labels[fitted])[0] if fitted.any() else -np.inf
    return thresholds


def accuracy_cv(scores, labels, strata=None, repeats: int = CV_REPEATS, seed: int = 0) -> float:
    """Mean accuracy of cross-fitted thresholds (two-fold, both ways, over `repeats` seeded stratified splits): an
    estimate of the accuracy a tune threshold reaches on new maps, unlike the in-sample best accuracy."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    thresholds = cross_fitted_thresholds(scores, labels, strata, repeats, seed)
    return float(np.mean((scores[None, :] >= thresholds) == (labels[None, :] == 1)))


def objective_se(metric: str, values: dict, labels) -> float:
    """Standard error of a tune metric: binomial (Agresti-Coull) for accuracy and accuracy_cv (the cross-fitted
    estimate has at least this error: every map is judged once per split), Hanley-McNeil for AUROC."""
    labels = np.asarray(labels, int)
    if metric == "auroc":
        return auroc_se(values["auroc"], int(labels.sum()), int((1 - labels).sum()))
    return accuracy_se(values[metric], len(labels))


def rows_auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every row of (B, n) scores and labels (ties averaged)."""
    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_indices(strata: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) resampled indices, with replacement within each stratum (so every draw keeps the counts)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(strata)), dtype=np.int64)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        out[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return out


def _interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def bootstrap_interval(scores, labels, threshold: float, strata=None, n_boot: int = N_BOOT,
                       seed: int = 0) -> dict:
    """95 % percentile-bootstrap intervals of accuracy (at the fixed `threshold`) and AUROC."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    strata = labels if strata is None else np.asarray(strata)
    idx = bootstrap_indices(strata, n_boot, seed)
    correct = ((scores >= threshold) == (labels == 1)).astype(float)
    has_both = 0 < labels.sum() < len(labels)
    return {"accuracy": _interval(correct[idx].mean(axis=1)),
            "auroc": _interval(rows_auroc(scores[idx], labels[idx])) if has_both else None}


def holdout_intervals(scores, labels, conditions, threshold: float, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Intervals of holdout accuracy and AUROC, overall (stratified by label x condition) and per condition."""
    scores, labels, conditions = np.asarray(scores, float), np.asarray(labels, int), np.asarray(conditions)
    out = bootstrap_interval(scores, labels, threshold, strata_of(labels, list(conditions)), n_boot, seed)
    out["by_condition"] = {}
    for condition in CONDITIONS:
        part = conditions == condition
        if part.any():
            out["by_condition"][condition] = bootstrap_interval(scores[part], labels[part], threshold, None,
                                                                n_boot, seed)
    out.update({"level": LEVEL, "n_boot": n_boot, "seed": seed,
                "method": "percentile bootstrap, resampled within label x condition"})
    return out


def paired_auroc_difference(scores_a, scores_b, labels, strata=None, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """AUROC(a) - AUROC(b) on the same maps with a paired bootstrap interval (both resampled with the same maps)
    and a two-sided bootstrap p-value (twice the smaller share of draws on either side of zero)."""
    scores_a, scores_b, labels = np.asarray(scores_a, float), np.asarray(scores_b, float), np.asarray(labels, int)
    strata = labels if strata is None else np.asarray(strata)
    idx = bootstrap_indices(strata, n_boot, seed)
    draws = rows_auroc(scores_a[idx], labels[idx]) - rows_auroc(scores_b[idx], labels[idx])
    p_value = min(1.0, 2 * min(np.mean(draws <= 0), np.mean(draws >= 0)))
    return {"difference": auroc(scores_a, labels) - auroc(scores_b, labels), "interval": _interval(draws),
            "p_value": float(p_value), "n_boot": n_boot, "seed": seed}


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Accuracy(a) - accuracy(b) on the same maps and McNemar's exact test on the maps where they disagree."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    p_value = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    n = len(correct_a)
    difference = (only_a - only_b) / n
    # Wald interval of a paired difference of proportions
    variance = ((only_a + only_b) / n - difference ** 2) / n
    half = 1.959964 * math.sqrt(max(variance, 0.0))
    return {"difference": difference, "interval": [difference - half, difference + half], "only_a_correct": only_a,
            "only_b_correct": only_b, "p_value": float(p_value)}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound at 0 %, 100 % and small n, where the normal one is not)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))
