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


def test_too_few_test_maps_for_both_blocks_is_named_with_the_numbers():
    from hdmap.data.splits import SplitTooSmallError

    labels, conditions = [0, 0, 1, 1], ["cold", "warm", "cold", "warm"]  # one map per label and condition
    with pytest.raises(SplitTooSmallError, match=r"tune has 0 good map\(s\); tune has 0 faulty.*'good/cold': 1"):
        split_tune_holdout(labels, conditions, [f"{i}.tiff" for i in range(4)], 0.3, 0)
    with pytest.raises(SplitTooSmallError, match="only one label"):
        split_tune_holdout([0, 0, 0, 0], conditions, [f"{i}.tiff" for i in range(4)], 0.3, 0)


def test_a_block_with_few_maps_of_a_label_gets_a_note():
    from hdmap.data.splits import small_block_notes

    labels = [0] * 6 + [1] * 6
    split = split_tune_holdout(labels, ["cold", "warm"] * 6, [f"{i}.tiff" for i in range(12)], 0.3, 0)
    notes = small_block_notes(split, labels)
    assert len(notes) == 2 and notes[0].startswith("the tune block holds only 2 good, 2 faulty map(s)")
    many = [0] * 60 + [1] * 60
    big = split_tune_holdout(many, ["cold", "warm"] * 60, [f"{i}.tiff" for i in range(120)], 0.3, 0)
    assert [n.split(" block")[0] for n in small_block_notes(big, many)] == []
