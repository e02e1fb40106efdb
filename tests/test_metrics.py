import math

import numpy as np
import pytest

from hdmap.evaluation.metrics import accuracy_at, auroc, average_precision, best_threshold, f1_at, macro_average
from hdmap.evaluation.protocol import protocol_metrics


def test_auroc_hand_cases():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # 3 of 4 pairs ordered
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    assert math.isnan(auroc([0.1, 0.2], [0, 0]))


def test_average_precision_hand_case():
    # ranks: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0): AP = 0.5 * 1 + 0.5 * 2/3
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5 + 1 / 3)


def test_threshold_accuracy_f1():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    threshold, accuracy = best_threshold(scores, labels)
    assert accuracy == 0.75 and accuracy_at(scores, labels, threshold) == 0.75
    assert f1_at(scores, labels, 0.3) == pytest.approx(2 * 2 / (2 * 2 + 1))


def test_protocol_threshold_comes_from_tune():
    scores = [0.1, 0.9, 0.2, 0.8, 0.5, 0.6, 0.55, 0.7]
    labels = [0, 1, 0, 1, 0, 1, 0, 1]
    conditions = ["cold", "cold", "warm", "warm", "cold", "cold", "warm", "warm"]
    out = protocol_metrics(scores, labels, conditions, tune_idx=[0, 1, 2, 3], holdout_idx=[4, 5, 6, 7])
    threshold = out["tune"]["threshold"]
    assert 0.2 < threshold < 0.8
    assert out["holdout"]["accuracy"] == accuracy_at([0.5, 0.6, 0.55, 0.7], [0, 1, 0, 1], threshold)
    assert out["holdout"]["accuracy_oracle"] == 1.0
    assert set(out["holdout"]["by_condition"]) == {"cold", "warm", "cold_fault_vs_warm_good"}


def test_macro_average():
    assert macro_average({"a": {"auroc": 0.8}, "b": {"auroc": 0.6}})["auroc"] == pytest.approx(0.7)


def test_best_threshold_is_the_middle_of_the_plateau():
    scores = np.array([0.1, 0.2, 0.5, 0.9, 1.0])
    labels = np.array([0, 0, 0, 1, 1])
    threshold, accuracy = best_threshold(scores, labels)
    assert accuracy == 1.0 and threshold == pytest.approx(0.7)  # anywhere in (0.5, 0.9] is perfect
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])  # one stray fault: the best run is one candidate
    labels = np.array([0, 1, 0, 0, 0, 1, 1])
    threshold, accuracy = best_threshold(scores, labels)
    assert threshold == pytest.approx(0.55) and accuracy == accuracy_at(scores, labels, threshold) == 6 / 7


@pytest.mark.parametrize("scores, labels", [
    ([0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0]),  # the best plateau reaches the top end
    ([0.1, 0.2, 0.3, 0.4], [1, 1, 1, 0]),  # ... and the bottom end
    ([0.5, 0.5, 0.5], [0, 1, 1]),  # one distinct score
    ([0.0, 0.0], [0, 1]),
    (list(np.random.default_rng(3).normal(size=40)), list(np.random.default_rng(4).integers(0, 2, 40))),
])
def test_the_threshold_follows_the_scores_units(scores, labels):
    """The same scores in other units (x 1000) give the threshold in those units and the same decisions on any
    other map: a threshold never depends on a fixed offset in the score's units."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    threshold, accuracy = best_threshold(scores, labels)
    scaled, scaled_accuracy = best_threshold(scores * 1000, labels)
    assert scaled == pytest.approx(threshold * 1000) and scaled_accuracy == accuracy
    probes = np.linspace(scores.min() - 2, scores.max() + 2, 101)
    assert np.array_equal(probes >= threshold, probes * 1000 >= scaled)
