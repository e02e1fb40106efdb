import numpy as np
import pytest

from hdmap.data.splits import SplitMismatchError, TestSplit, sample_per_condition, split_tune_holdout


def _toy():
    labels = [0] * 100 + [1] * 100
    conditions = (["cold"] * 50 + ["warm"] * 50) * 2
    return labels, conditions, [f"f{i}.tiff" for i in range(200)]


def test_split_is_stratified_and_reproducible():
    labels, conditions, paths = _toy()
    a = split_tune_holdout(labels, conditions, paths, 0.3, seed=7)
    b = split_tune_holdout(labels, conditions, paths, 0.3, seed=7)
    c = split_tune_holdout(labels, conditions, paths, 0.3, seed=8)
    assert a.tune == b.tune and a.tune != c.tune
    assert len(a.tune) == 60 and len(a.holdout) == 140 and not set(a.tune) & set(a.holdout)
    strata = [(labels[i], conditions[i]) for i in a.tune]
    assert all(strata.count(s) == 15 for s in {(0, "cold"), (0, "warm"), (1, "cold"), (1, "warm")})


def test_split_save_load_and_mismatch(tmp_path):
    labels, conditions, paths = _toy()
    split = split_tune_holdout(labels, conditions, paths)
    split.save(tmp_path / "split.json")
    loaded = TestSplit.load(tmp_path / "split.json")
    assert loaded == split
    loaded.check_matches(paths)
    with pytest.raises(SplitMismatchError, match="other test files"):
        loaded.check_matches(paths[:-1])


def test_sampling_per_condition():
    assignment = np.array(["cold"] * 30 + ["warm"] * 5)
    picked = sample_per_condition(assignment, 4, seed=0)
    assert len(picked["cold"]) == 4 and all(assignment[picked["warm"]] == "warm")
    assert np.array_equal(picked["cold"], sample_per_condition(assignment, 4, seed=0)["cold"])
    with pytest.raises(ValueError, match="'warm' but the assignment has only 5"):
        sample_per_condition(assignment, 8, seed=0)


def test_a_saved_split_made_with_another_fraction_or_seed_is_refused_unless_reused(synth_root, tmp_path):
    from hdmap.data.domain import load_domain
    from hdmap.data.splits import SplitMismatchError

    path = tmp_path / "split.json"
    load_domain(str(synth_root), "C", path, 0.3, 0)
    assert load_domain(str(synth_root), "C", path, 0.3, 0).split.tune_fraction == 0.3  # the same settings: reused
    with pytest.raises(SplitMismatchError, match=r"split.tune_fraction=0.3, split.seed=0.*split.tune_fraction=0.5, "
                                                 r"split.seed=0"):
        load_domain(str(synth_root), "C", path, 0.5, 0)
    with pytest.raises(SplitMismatchError, match="split.seed=7"):
        load_domain(str(synth_root), "C", path, 0.3, 7)
    reused = load_domain(str(synth_root), "C", path, 0.5, 0, reuse_split=True)  # the user named the file
    assert reused.split.tune_fraction == 0.3
