"""Standard errors, cross-fitted accuracy, bootstrap intervals and paired tests (hdmap/evaluation/uncertainty.py)."""
import math

import numpy as np
import pytest
from scipy.stats import norm

from hdmap.evaluation.metrics import auroc, best_threshold
from hdmap.evaluation.protocol import protocol_metrics, tune_metrics
from hdmap.evaluation.uncertainty import (accuracy_cv, accuracy_se, auroc_se, bootstrap_interval, cross_fitted_thresholds,
                                          mcnemar_exact, paired_auroc_difference, rows_auroc, strata_of)


def _noisy(n=60, seed=0, shift=1.0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    return rng.normal(size=n) + shift * labels, labels


def test_a_maps_own_label_never_sets_the_threshold_that_judges_it():
    scores, labels = _noisy(40, seed=3)
    strata = strata_of(labels)
    before = cross_fitted_thresholds(scores, labels, strata)
    for i in range(len(labels)):
        flipped = labels.copy()
        flipped[i] = 1 - flipped[i]
        # same halves (strata kept), only map i's label differs: the thresholds applied to map i do not move
        after = cross_fitted_thresholds(scores, flipped, strata)
        np.testing.assert_array_equal(after[:, i], before[:, i])
        # while some other map's threshold does move for some i (the label is used, just not for itself)
    moved = any(not np.array_equal(cross_fitted_thresholds(scores, np.where(np.arange(40) == i, 1 - labels, labels),
                                                           strata), before) for i in range(40))
    assert moved


def test_accuracy_cv_is_not_optimistic_on_scores_that_carry_no_information():
    in_sample, cross_fitted = [], []
    for seed in range(40):
        scores, labels = _noisy(40, seed=seed, shift=0.0)
        in_sample.append(best_threshold(scores, labels)[1])
        cross_fitted.append(accuracy_cv(scores, labels))
    assert np.mean(in_sample) > 0.55  # the best threshold on the same maps flatters chance
    assert np.mean(cross_fitted) < 0.52 < np.mean(in_sample) - 0.03


def test_accuracy_cv_tracks_accuracy_on_separable_scores():
    scores, labels = _noisy(100, seed=1, shift=6.0)
    assert accuracy_cv(scores, labels) > 0.97


def test_tune_metrics_report_every_objective_with_its_standard_error():
    scores, labels = _noisy(80, seed=2)
    values = tune_metrics(scores, labels, ["cold", "warm"] * 40)
    assert set(values["se"]) == {"accuracy", "auroc", "accuracy_cv"}
    adjusted = (values["accuracy"] * 80 + 2) / 84
    assert values["se"]["accuracy"] == pytest.approx(math.sqrt(adjusted * (1 - adjusted) / 84))
    assert accuracy_se(1.0, 60) == pytest.approx(0.0217, abs=1e-3)  # 100 % on 60 maps is not certain
    assert accuracy_se(0.98, 600) == pytest.approx(0.0061, abs=2e-4)
    assert values["accuracy_cv"] <= values["accuracy"]


def test_rows_auroc_matches_the_scalar_auroc():
    scores, labels = _noisy(30, seed=4)
    scores = np.round(scores, 1)  # ties
    rows = np.stack([scores, scores[::-1]])
    assert rows_auroc(rows, np.stack([labels, labels])) == pytest.approx([auroc(scores, labels),
                                                                           auroc(scores[::-1], labels)])


def test_hanley_mcneil_standard_error_is_near_the_spread_of_simulated_aurocs():
    values = [auroc(*_noisy(100, seed=s)) for s in range(300)]
    assert auroc_se(float(np.mean(values)), 50, 50) == pytest.approx(np.std(values), rel=0.2)


def test_bootstrap_intervals_cover_known_values_at_about_the_nominal_rate():
    """Scores N(0,1) for goods and N(1,1) for faults: AUROC = Phi(1/sqrt 2); accuracy at threshold 0.5 is
    Phi(0.5). 200 seeded simulations of 120 maps: both intervals should cover about 95 % of the time."""
    true_auroc, true_accuracy = norm.cdf(1 / math.sqrt(2)), norm.cdf(0.5)
    covered = {"auroc": 0, "accuracy": 0}
    runs = 200
    for seed in range(runs):
        scores, labels = _noisy(120, seed=1000 + seed)
        intervals = bootstrap_interval(scores, labels, 0.5, n_boot=400, seed=seed)
        covered["auroc"] += intervals["auroc"][0] <= true_auroc <= intervals["auroc"][1]
        covered["accuracy"] += intervals["accuracy"][0] <= true_accuracy <= intervals["accuracy"][1]
    for name, count in covered.items():
        assert 0.89 <= count / runs <= 0.99, (name, count / runs)


def test_holdout_metrics_carry_intervals_overall_and_per_condition():
    scores, labels = _noisy(80, seed=5)
    conditions = np.array(["cold", "warm"] * 40)
    out = protocol_metrics(scores, labels, conditions, np.arange(0, 80, 3), np.setdiff1d(np.arange(80),
                                                                                          np.arange(0, 80, 3)))
    intervals = out["holdout"]["intervals"]
    for block in (intervals, intervals["by_condition"]["cold"], intervals["by_condition"]["warm"]):
        low, high = block["auroc"]
        assert low <= high
    assert intervals["auroc"][0] <= out["holdout"]["auroc"] <= intervals["auroc"][1]
    assert intervals["accuracy"][0] <= out["holdout"]["accuracy"] <= intervals["accuracy"][1]


def test_paired_tests_see_a_real_difference_and_not_an_imagined_one():
    scores, labels = _noisy(400, seed=6, shift=1.5)
    rng = np.random.default_rng(0)
    worse = scores + rng.normal(scale=2.0, size=len(scores))
    real = paired_auroc_difference(scores, worse, labels)
    assert real["difference"] > 0 and real["interval"][0] > 0 and real["p_value"] < 0.01
    same = paired_auroc_difference(scores, scores + 1e-9 * rng.normal(size=len(scores)), labels)
    assert same["interval"][0] <= 0 <= same["interval"][1]
    correct = (scores >= 0.75) == (labels == 1)
    test = mcnemar_exact(correct, (worse >= 0.75) == (labels == 1))
    assert test["difference"] > 0 and test["p_value"] < 0.05
    # a known exact value (not the no-disagreement branch): 8 maps only A gets right, 1 only B: two-sided binomial
    # p = 2 (C(9,0) + C(9,1)) / 2^9 = 20 / 512
    a = np.r_[np.ones(8, bool), np.zeros(1, bool), np.ones(5, bool)]
    b = np.r_[np.zeros(8, bool), np.ones(1, bool), np.ones(5, bool)]
    known = mcnemar_exact(a, b)
    assert known["p_value"] == pytest.approx(20 / 512) and known["difference"] == pytest.approx(7 / 14)
    balanced = mcnemar_exact(np.r_[np.ones(10, bool), np.zeros(10, bool)], np.r_[np.zeros(10, bool), np.ones(10, bool)])
    assert balanced["difference"] == 0 and balanced["p_value"] == pytest.approx(1.0)
