"""A search space fitted to the data it searches (hdmap/tune/data_fit.py): the shots the gate's split cannot hold are
dropped with a note before Ray starts, the largest kept value fits (soft banks and fusion included) and one more
does not, and a space left with no choice is exit 2 naming the setting."""
import copy
import json

import pytest

from hdmap.cli.main import main
from hdmap.config import ConfigError, merge
from hdmap.data.domain import load_domain
from hdmap.data.synth import SynthConfig, write_dataset
from hdmap.kinds.registry import fit_and_score, validate
from hdmap.tune.data_fit import fit_space_to_data
from hdmap.tune.runner import SPACES_DIR
from hdmap.tune.spaces import load_space

from conftest import TINY_BACKBONE


@pytest.fixture(scope="module")
def hundred_maps(tmp_path_factory):
    """100 train maps (the gate splits them about 55 / 45), 10 + 10 test maps."""
    root = tmp_path_factory.mktemp("hundred")
    write_dataset(root, SynthConfig(n_train=100, n_test=10, seed=7, domains="C"))
    return root


def test_the_quick_space_drops_the_shots_the_gate_cannot_hold(hundred_maps):
    data = load_domain(str(hundred_maps), "C")
    space = load_space(SPACES_DIR / "hdmap_patchcore_quick.yaml")
    notes = fit_space_to_data(space, space.base_config(), data)
    shots = next(p for p in space.params if p.key == "model.shots")
    assert shots.values == [8, 16, 32, None] and len(notes) == 1 and space.notes == notes
    assert "'model.shots' dropped [64]" in notes[0] and "cold" in notes[0] and "warm" in notes[0]
    untouched = load_space(SPACES_DIR / "hdmap_patchcore_quick.yaml")  # 200 maps hold 64: nothing dropped
    embedded = load_domain(str(hundred_maps), "C")
    embedded.train_maps = embedded.train_maps.repeat(2, axis=0)
    embedded.train = embedded.train * 2
    assert fit_space_to_data(untouched, untouched.base_config(), embedded) == []


def test_the_largest_kept_shots_fit_with_soft_banks_and_fusion_and_one_more_does_not(hundred_maps, tmp_path):
    from hdmap.features.cache import FeatureCache

    data = load_domain(str(hundred_maps), "C", tmp_path / "split.json")
    space = load_space(SPACES_DIR / "hdmap_patchcore_quick.yaml")
    note = fit_space_to_data(space, space.base_config(), data)[0]
    most = int(note.split("at most ")[1].split(" ")[0])
    base = merge(space.base_config(), {"backbone": TINY_BACKBONE, "image_size": 112,
                                       "model": {"bank_mode": "soft", "fusion": "max", "coreset_ratio": 0.5,
                                                 "gate_fallback": False, "calibration_maps": 2}})
    cache = FeatureCache(tmp_path / "cache", progress=False)
    fit_and_score(validate(merge(base, {"model": {"shots": most}})), data, cache, tune_only=True)
    with pytest.raises(ValueError, match="soft mode needs >= 2 held-out|model.shots"):
        fit_and_score(validate(merge(base, {"model": {"shots": most + 3}})), data, cache, tune_only=True)


def test_a_range_is_clipped_and_a_space_with_no_choice_left_is_an_error_naming_the_setting(hundred_maps, tmp_path,
                                                                                           capsys):
    data = load_domain(str(hundred_maps), "C")
    ranged = tmp_path / "ranged.yaml"
    ranged.write_text("model_name: hdmap_patchcore\nparams:\n  model.shots: {int: [4, 80]}\n")
    space = load_space(ranged)
    fit_space_to_data(space, space.base_config(), data)
    assert space.params[0].values[0] == 4 and space.params[0].values[1] < 50
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text("model_name: hdmap_patchcore\nparams:\n  model.shots: {choice: [64, 128]}\n")
    space = load_space(impossible)
    with pytest.raises(ConfigError, match="'model.shots': no choice this data can hold: at most"):
        fit_space_to_data(space, space.base_config(), data)
    code = main(["tune", "--data-root", str(hundred_maps), "--space", str(impossible), "--num-samples", "2",
                 "--storage", str(tmp_path / "runs"), "--backbone", "tf_efficientnet_lite0"])
    assert code == 2 and "parameter 'model.shots': no choice this data can hold" in capsys.readouterr().err


def test_few_shot_feclip_shots_are_fitted_to_its_gate(hundred_maps, tmp_path):
    data = load_domain(str(hundred_maps), "C")
    space = load_space(SPACES_DIR / "feclip.yaml")
    few = next(p for p in space.params if p.key == "fewshot.shots")
    few.values = [0, 4, 16, 90]
    notes = fit_space_to_data(space, copy.deepcopy(space.base_config()), data)
    assert few.values == [0, 4, 16] and "'fewshot.shots' dropped [90]" in notes[0]


@pytest.mark.slow  # Ray and the offline EfficientNet-Lite0 on 100 train maps: ~3 min on 2 cores
def test_the_shipped_quick_space_on_100_train_maps_runs_every_trial(hundred_maps, tmp_path):
    from hdmap.tune.runner import SearchOptions, run_search

    summary = run_search(SearchOptions(data_root=str(hundred_maps), space=str(SPACES_DIR / "hdmap_patchcore_quick.yaml"),
                                       num_samples=2, storage=str(tmp_path / "runs"), name="hundred",
                                       cache_dir=str(tmp_path / "cache"), verbose=0))
    assert summary["n_trials"] == 2 and summary["n_failed"] == 0
    text = (tmp_path / "runs" / "hundred" / "summary.md").read_text()
    assert "'model.shots' dropped [64]" in text and "assigns" in text


def test_a_parameter_searched_only_under_a_dropped_choice_is_said_to_be_unsearched(hundred_maps, tmp_path):
    space_file = tmp_path / "when.yaml"
    space_file.write_text("params:\n  model.shots: {choice: [8, 64]}\n"
                          "  model.reweight_k: {int: [1, 9], when: {model.shots: 64}}\n")
    space = load_space(space_file)
    notes = fit_space_to_data(space, space.base_config(), load_domain(str(hundred_maps), "C"))
    assert any("'model.reweight_k' is searched only when model.shots is [64], all dropped" in n for n in notes)


def _plans(model: dict, data) -> bool:
    """The oracle: does PatchCore's own fit plan take these settings on this data?"""
    from hdmap.kinds.patchcore.model import PatchCoreModel
    from hdmap.kinds.patchcore.settings import PatchCoreSettings

    try:
        PatchCoreModel(PatchCoreSettings(**model)).plan_fit(data.train_maps, None, None, data.train_truth)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("bank_mode, fusion, threshold", [
    ("gated", "none", None), ("gated", "max", None), ("soft", "max", None), ("mixed", "max", None),
    ("gated", "none", "lopsided"), ("gated", "max", "even")])
def test_the_shots_a_fitted_space_keeps_fit_and_the_ones_it_drops_do_not(bank_mode, fusion, threshold, tmp_path,
                                                                        tmp_path_factory):
    """plan_fit as the oracle, on 30 train maps: the largest kept value plans, the smallest dropped does not; a fixed
    gate threshold is the one the limit uses; null is dropped only where it does not plan."""
    import numpy as np


    root = tmp_path_factory.mktemp("thirty")
    write_dataset(root, SynthConfig(n_train=30, n_test=6, seed=4, domains="C"))
    data = load_domain(str(root), "C")
    stat = np.sort(np.percentile(data.train_maps.reshape(30, -1), 90, axis=1))
    cut = {None: None, "lopsided": float((stat[-4] + stat[-3]) / 2), "even": float(np.median(stat))}[threshold]
    model = {"bank_mode": bank_mode, "fusion": fusion, "input_norm": "none", "band_weight": 0.0,
             "gate_fallback": False, "calibration_maps": 8, "gate": {"kind": "intensity", "threshold": cut}}
    space_file = tmp_path / "s.yaml"
    space_file.write_text("model_name: hdmap_patchcore\nfixed:\n  model: " + json.dumps(model) +
                          "\nparams:\n  model.shots: {choice: [" + ", ".join(map(str, range(1, 31))) + ", null]}\n")
    space = load_space(space_file)
    fit_space_to_data(space, space.base_config(), data)
    kept = [v for v in next(p for p in space.params if p.key == "model.shots").values if v is not None]
    settings = space.base_config()["model"]
    assert _plans({**settings, "shots": max(kept)}, data)
    if max(kept) < 30:
        assert not _plans({**settings, "shots": max(kept) + 1}, data)
    null_kept = None in next(p for p in space.params if p.key == "model.shots").values
    assert _plans({**settings, "shots": None}, data) == null_kept
    if threshold == "lopsided":  # the fixed cut leaves 3 warm maps: the limit counts them, not a 2-means split
        assert max(kept) == 3


def test_train_maps_fits_on_a_seeded_sample_and_the_space_fit_counts_it(hundred_maps, tmp_path):
    """model.train_maps: the fit reads a seeded sample of train (noted), which changes the objective; the shots a
    space keeps are those the sample holds."""
    from hdmap.features.cache import FeatureCache

    data = load_domain(str(hundred_maps), "C", tmp_path / "split.json")
    base = merge(load_space(SPACES_DIR / "hdmap_patchcore_quick.yaml").base_config(),
                 {"backbone": TINY_BACKBONE, "image_size": 56, "model": {"bank_size": None, "coreset_ratio": 0.5}})
    cache = FeatureCache(tmp_path / "cache", progress=False)
    _, _, everything = fit_and_score(validate(base), data, cache, tune_only=True)
    _, _, sampled = fit_and_score(validate(merge(base, {"model": {"train_maps": 24}})), data, cache, tune_only=True)
    assert any("model.train_maps=24: the fit read 24 of the 100 train maps" in n for n in sampled["notes"])
    assert sampled["tune"] != everything["tune"]  # a sample is another fit
    space_file = tmp_path / "s.yaml"
    space_file.write_text("model_name: hdmap_patchcore\nfixed:\n  model: {train_maps: 24}\n"
                          "params:\n  model.shots: {choice: [4, 8, 16, 30]}\n")
    space = load_space(space_file)
    fit_space_to_data(space, space.base_config(), data)
    kept = next(p for p in space.params if p.key == "model.shots").values
    assert 30 not in kept and 4 in kept  # 24 maps hold no 30 per condition; 100 would


def test_null_shots_under_fusion_is_dropped_below_16_train_maps_as_the_fit_plan_refuses_it(tmp_path_factory,
                                                                                           tmp_path):
    root = tmp_path_factory.mktemp("fourteen")
    write_dataset(root, SynthConfig(n_train=14, n_test=6, seed=4, domains="C"))
    data = load_domain(str(root), "C")
    model = {"bank_mode": "mixed", "fusion": "max", "input_norm": "none", "band_weight": 0.0, "gate_fallback": False}
    space_file = tmp_path / "s.yaml"
    space_file.write_text("model_name: hdmap_patchcore\nfixed:\n  model: " + json.dumps(model) +
                          "\nparams:\n  model.shots: {choice: [2, 3, null]}\n")
    space = load_space(space_file)
    notes = fit_space_to_data(space, space.base_config(), data)
    values = next(p for p in space.params if p.key == "model.shots").values
    assert None not in values and any("null (every train map) under fusion needs 16 train maps" in n for n in notes)
    settings = space.base_config()["model"]
    assert not _plans({**settings, "shots": None}, data) and _plans({**settings, "shots": max(values)}, data)
