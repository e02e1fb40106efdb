"""Guards of a search that need no Ray: counts it cannot run with, one search per experiment at a time, and a
resumed search whose space file was edited."""
import json
import os

import pytest

from conftest import Payload
from hdmap.cli.main import main
from hdmap.config import ConfigError
from hdmap.tune.runner import RUN_FILE, SearchOptions, check_space_unchanged, one_search_at_a_time, run_search


@pytest.mark.parametrize("flag, value", [("--num-samples", "0"), ("--num-samples", "-1"), ("--max-concurrent", "0"),
                                         ("--repeats", "0"), ("--cpus-per-trial", "0"), ("--max-retries", "-1")])
def test_counts_a_search_cannot_run_with_are_refused_by_name(flag, value, capsys, tmp_path):
    """One check for the CLI and the Python API (`check_counts`): exit 2 naming the flag, nothing written."""
    assert main(["tune", flag, value, "--storage", str(tmp_path)]) == 2
    assert f"{flag} expects" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_same_counts_are_refused_when_a_search_is_started_from_code(tmp_path):
    with pytest.raises(ConfigError, match="--num-samples expects an integer >= 1, got -1"):
        run_search(SearchOptions(num_samples=-1, storage=str(tmp_path)))


def test_a_second_search_of_the_same_experiment_is_refused_naming_the_first(tmp_path):
    with one_search_at_a_time(tmp_path):
        with pytest.raises(ConfigError, match=rf"being run by another hdmap tune \(.* pid {os.getpid()}\)"):
            with one_search_at_a_time(tmp_path):
                pytest.fail("two searches of one experiment at once")
    with one_search_at_a_time(tmp_path):  # free again once the first has ended
        pass


def test_a_resumed_search_refuses_an_edited_space_unless_allowed(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model.bank_mode: {choice: [mixed, gated]}\n")
    exp_dir = tmp_path / "runs" / "s"
    exp_dir.mkdir(parents=True)
    (exp_dir / RUN_FILE).write_text(json.dumps({"space_text": space.read_text(), "options": {}}))
    options = SearchOptions(space=str(space), resume=True, name="s", storage=str(tmp_path / "runs"))
    assert check_space_unchanged(options, exp_dir) == []
    space.write_text("params:\n  model.bank_mode: {choice: [mixed, soft]}\n")
    with pytest.raises(ConfigError, match=r"space.yaml changed since experiment s began.*--allow-space-change"):
        check_space_unchanged(options, exp_dir)
    options.allow_space_change = True
    changes = check_space_unchanged(options, exp_dir)
    assert len(changes) == 1 and "gated" in changes[0]["before"]


def test_base_settings_from_the_command_line_are_checked_and_a_searched_key_is_refused(synth_root, tmp_path):
    from conftest import TINY_SPACE

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    options = dict(data_root=str(synth_root), space=str(space), storage=str(tmp_path / "runs"), verbose=0)
    with pytest.raises(ConfigError, match=r"--set/--config model.bank_mode: the space \(tiny.yaml\) searches "
                                          r"model.bank_mode"):
        run_search(SearchOptions(sets=["model.bank_mode=gated"], **options))
    with pytest.raises(ConfigError, match=r"--set/--config model.shots: the space \(tiny.yaml\) searches model.shots"):
        run_search(SearchOptions(sets=["model.shots=16"], **options))
    with pytest.raises(ConfigError, match="unknown config key 'model.colour'"):
        run_search(SearchOptions(sets=["model.colour=red"], **options))
    with pytest.raises(ConfigError, match="config key 'model.top_fraction' expects"):
        run_search(SearchOptions(sets=["model.top_fraction=0"], **options))


def test_a_search_records_its_sampler_and_versions_and_a_resume_under_others_says_so(capsys):
    from hdmap.tune.runner import installed_versions, note_other_versions
    from hdmap.tune.spaces import TPE_SETTINGS

    assert TPE_SETTINGS["multivariate"] is True and TPE_SETTINGS["constant_liar"] is True  # on every Optuna version
    now = installed_versions()
    note_other_versions(now)
    assert capsys.readouterr().err == ""
    note_other_versions({**now, "optuna": "4.5.0"})
    assert f"optuna 4.5.0 -> {now['optuna']}" in capsys.readouterr().err



@pytest.fixture(scope="module")
def finished_band_search(synth_root, tmp_path_factory):
    """A finished 2-trial band search (seconds: no backbone)."""
    storage = tmp_path_factory.mktemp("searches")
    run_search(SearchOptions(data_root=str(synth_root), model="band", num_samples=2, max_concurrent=1, verbose=0,
                             name="done", storage=str(storage), cache_dir=str(storage / "cache")))
    return storage


def _copy_search(storage, tmp_path):
    import shutil

    shutil.copytree(storage / "done", tmp_path / "runs" / "done")
    return tmp_path / "runs"


def test_a_crafted_pickle_in_a_search_folder_is_refused_on_resume_without_running(synth_root, tmp_path):
    import pickle

    import ray

    storage = tmp_path / "runs"
    run_search(SearchOptions(data_root=str(synth_root), model="band", num_samples=1, verbose=0, name="s",
                             storage=str(storage), cache_dir=str(tmp_path / "cache")))
    for name in ("tuner.pkl", "extra.pkl"):  # a replaced file, an added one
        (storage / "s" / name).write_bytes(pickle.dumps(Payload(tmp_path / "payload_ran")))
        with pytest.raises(ConfigError, match=rf"{name}: (changed|appeared) since this search ended.*"
                                              r"--trust-search-files"):
            run_search(SearchOptions(resume=True, name="s", storage=str(storage), verbose=0))
        assert not (tmp_path / "payload_ran").exists()
    ray.shutdown()


def test_resuming_a_copied_search_or_other_data_is_refused_naming_the_difference(finished_band_search, tmp_path,
                                                                               synth_root):
    storage = _copy_search(finished_band_search, tmp_path)
    with pytest.raises(ConfigError, match=r"this search began in .*done, and Ray would write the resumed trials "
                                          r"there, not here"):
        run_search(SearchOptions(resume=True, name="done", storage=str(storage), verbose=0))
    with pytest.raises(ConfigError, match=r"--resume --data-root .*: this search began on"):
        run_search(SearchOptions(resume=True, name="done", storage=str(finished_band_search), verbose=0,
                                 data_root=str(tmp_path)))


def test_a_finished_search_resumes_as_it_was_left(finished_band_search):
    import ray

    summary = run_search(SearchOptions(resume=True, name="done", storage=str(finished_band_search), verbose=0,
                                       num_samples=3))
    ray.shutdown()
    assert summary["n_trials"] == 3


def test_a_reused_trial_result_belongs_to_the_same_hdmap_code(monkeypatch):
    """A search resumed after an upgrade fits again: the reuse key holds a digest of hdmap's source."""
    from hdmap.tune import trial_results

    key = trial_results.config_key({"a": 1}, "auroc", 1)
    assert key == trial_results.config_key({"a": 1}, "auroc", 1)
    monkeypatch.setattr(trial_results, "code_version", lambda: "another-version")
    assert trial_results.config_key({"a": 1}, "auroc", 1) != key


def test_the_disk_a_search_feature_cache_needs_is_said_before_it_starts(synth_root, tmp_path, capsys):
    """One backbone pass a map size: bytes x maps x the input settings the space reaches; and the free disk."""
    from hdmap.features.cache import FeatureCache
    from hdmap.tune.cache_estimate import bytes_per_map, say_cache_needs
    from hdmap.tune.spaces import load_space

    from conftest import TINY_BACKBONE

    space_file = tmp_path / "s.yaml"
    space_file.write_text("model_name: hdmap_patchcore\nfixed:\n  backbone: " + json.dumps(TINY_BACKBONE) +
                          "\nparams:\n  image_size: {choice: [56, 112]}\n  model.input_norm: {choice: [none, "
                          "percentile]}\n")
    space = load_space(space_file)
    base = space.base_config()
    cache = FeatureCache(tmp_path / "cache", progress=False)
    per_map = {size: bytes_per_map(cache, base, (0, 1), size, base["resize"]) for size in (56, 112)}
    assert per_map[112] > 3 * per_map[56]  # four times the patches, give or take the aspect's rounding
    needs = say_cache_needs(space, base, (0, 1), 100, tmp_path / "cache")
    assert needs["settings"] == 4  # 2 sizes x 2 input normalisations
    assert needs["total_gb"] == pytest.approx(2 * (per_map[56] + per_map[112]) * 100 / 1e9)
    err = capsys.readouterr().err
    assert "feature cache: up to" in err and "4 input setting(s) x 100 maps" in err and "GB free there" in err
