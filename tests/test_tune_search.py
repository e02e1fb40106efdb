"""The search end to end on a tiny synthetic set with a tiny random ViT (Ray starts locally)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_SPACE
from hdmap.config import ConfigError
from hdmap.jobs.checkpoints import CheckpointMismatchError
from hdmap.jobs.evaluate_checkpoint import evaluate_checkpoint
from hdmap.tune.runner import SearchOptions, run_search

REPO = Path(__file__).resolve().parents[1]
HDMAP = str(Path(sys.executable).with_name("hdmap"))


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    yield
    import ray
    ray.shutdown()


def _options(synth_root, space_file, tmp_path, **kw):
    return SearchOptions(data_root=str(synth_root), domain="C", space=str(space_file), storage=str(tmp_path / "runs"),
                         cache_dir=str(tmp_path / "cache"), max_concurrent=2, verbose=0, **kw)


def _finished_trials(exp_dir: Path) -> dict:
    out = {}
    for result in exp_dir.glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if lines:
            out[lines[-1]["trial_id"]] = lines[-1]["objective"]
    return out


def _search_until_its_first_trial(program: list[str], synth_root, space_file, tmp_path, name: str, **popen):
    """An 8-trial search, one trial at a time, in a process of its own; returns once its first trial finished."""
    command = program + ["--data-root", str(synth_root), "--space", str(space_file), "--num-samples", "8",
                         "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", name,
                         "--cache-dir", str(tmp_path / "cache")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, **popen)
    deadline = time.time() + 240
    while time.time() < deadline and len(_finished_trials(tmp_path / "runs" / name)) < 1:
        time.sleep(0.1)
    return process, tmp_path / "runs" / name


def test_interrupted_search_resumes_keeping_finished_trials(synth_root, space_file, tmp_path):
    name = "resumable"
    process, exp_dir = _search_until_its_first_trial([sys.executable, str(REPO / "experiments" / "tune_domainC.py")],
                                                     synth_root, space_file, tmp_path, name,
                                                     stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=120) == 130
    before = _finished_trials(exp_dir)
    assert 1 <= len(before) < 8, "the search should have been interrupted after its first trial"
    interrupted = json.loads((exp_dir / "summary.json").read_text())
    assert interrupted["interrupted"] and "of 8 trials; continue with --resume" in interrupted["status"]
    assert "best SO FAR" in (exp_dir / "summary.md").read_text()
    assert "BEST SO FAR" in (exp_dir / "best" / "report.md").read_text()
    summary = run_search(_options(synth_root, space_file, tmp_path, name=name, resume=True))
    assert summary["n_trials"] == 8 and not summary["interrupted"] and summary["status"] == "finished"
    after = _finished_trials(exp_dir)
    assert all(after[trial] == objective for trial, objective in before.items())


def _parity_conditions_csv(root: Path, path: Path) -> Path:
    """Conditions by file-index parity (not the default half split): a run that forgot them splits differently."""
    rows = ["path,condition"]
    for subset in ("test/good", "test/fault"):
        for tiff in sorted((root / "domain_C" / subset).glob("*.tiff")):
            rows.append(f"{tiff},{'warm' if int(tiff.stem) % 2 else 'cold'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_sigterm_to_the_search_stops_it_with_143_and_an_interrupted_summary(synth_root, space_file, tmp_path):
    """What a scheduler or `timeout` does: SIGTERM to the driver alone. The search stops as on Ctrl-C (summary
    "interrupted", resumable) and exits 143 naming SIGTERM."""
    process, exp_dir = _search_until_its_first_trial([HDMAP, "tune"], synth_root, space_file, tmp_path, "terminated",
                                                     stderr=subprocess.PIPE, text=True)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 143, err[-3000:]
    assert "hdmap tune: terminated: SIGTERM received" in err and "--resume" in err
    summary = json.loads((exp_dir / "summary.json").read_text())
    assert summary["interrupted"] and "continue with --resume" in summary["status"]


def test_search_survives_failing_trials_and_eval_reproduces_the_trial(synth_root, space_file, tmp_path,
                                                                       tmp_path_factory, monkeypatch):
    _parity_conditions_csv(synth_root, tmp_path / "conditions.csv")
    start = tmp_path / "start.yaml"
    # the space's shots=500 is dropped before Ray starts (more than the data holds); a start config asking for it
    # anyway gets it: that trial fails, and the search goes on
    start.write_text("- {model.shots: 4, model.bank_mode: gated}\n- {model.shots: 500}\n")
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them: trials run in folders of their own
    options = _options(synth_root, space_file, tmp_path, num_samples=6, name="e2e", start=["start.yaml"],
                       condition_csv="conditions.csv")
    options.data_root = os.path.relpath(synth_root, tmp_path)
    summary = run_search(options)
    assert summary["n_trials"] == 6
    assert summary["n_failed"] >= 1 and "model.shots=500" in summary["failed"][0]["error"]  # the start's 500
    assert "'model.shots' dropped [500]" in (Path(summary["experiment"]) / "summary.md").read_text()
    best = summary["best"]
    assert best and 0 <= best["holdout"]["accuracy"] <= 1 and Path(best["checkpoint"]).exists()
    run_dir = Path(summary["experiment"])
    assert "Failed trials" in (run_dir / "summary.md").read_text()
    assert (run_dir / "objective_vs_trial.png").exists()
    _check_warm_start(run_dir, summary)

    # independent records: what the trial reported to Tune, and the metrics the trial saved beside its checkpoint
    trial_dir = Path(best["checkpoint"]).parents[1]
    reported = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()][-1]
    saved = json.loads((Path(best["checkpoint"]).parent / "trial_metrics.json").read_text())
    import torch
    if torch.cuda.is_available():  # `auto`: the trials share the machine's GPUs and ran on them
        assert saved["placement"]["device"] == "cuda" and saved["placement"]["gpu_ids"]
        assert saved["peak_memory"]["device"] == "cuda" and saved["peak_memory"]["peak_reserved_bytes"] > 0
    else:  # no GPU in this cluster: `auto` gave the trials none, and each hid every GPU from itself
        assert saved["placement"]["visible_devices"] == "" and saved["placement"]["device"] == "cpu"
        assert saved["peak_memory"]["device"] == "cpu" and saved["peak_memory"]["peak_rss_bytes"] > 0
    assert "Peak memory per trial" in (run_dir / "summary.md").read_text()
    import runpy
    monkeypatch.setattr(sys, "argv", ["eval_best.py", str(run_dir), "--out", str(tmp_path / "eval"),
                                      "--cache-dir", str(tmp_path / "cache")])
    with pytest.raises(SystemExit) as done:  # the script is a thin wrapper of `hdmap eval`
        runpy.run_path(str(REPO / "experiments" / "eval_best.py"), run_name="__main__")
    assert done.value.code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["tune"]["accuracy"] == reported["tune_accuracy"] == reported["objective"]
    assert saved["holdout"] is None  # a trial scores the tune maps only; holdout waits for the best trial
    assert metrics["tune"]["threshold"] == saved["tune"]["threshold"]
    assert metrics["tune"]["auroc"] == reported["tune_auroc"]
    assert metrics["holdout"] == best["holdout"]  # the summary's holdout is what eval reports
    split = json.loads((run_dir / "split.json").read_text())
    hold_conditions = [["cold", "warm"][int(Path(split["paths"][i]).stem) % 2] for i in split["holdout"]]
    assert metrics["holdout"]["by_condition"]["warm"]["n"] == hold_conditions.count("warm")  # the CSV's conditions

    from hdmap.data.synth import SynthConfig, write_dataset
    other = tmp_path_factory.mktemp("other")
    write_dataset(other, SynthConfig(n_train=40, n_test=40, seed=4, domains="C"))
    with pytest.raises(CheckpointMismatchError, match="differ"):
        evaluate_checkpoint(best["checkpoint"], data_root=str(other), cache_dir=str(tmp_path / "cache"))



def _check_warm_start(run_dir: Path, summary: dict) -> None:
    """The first trials are the defaults and the --start config, the defaults trial ran exactly the base config,
    and summary.md reports the winner against the defaults, intervals and importances."""
    from hdmap.tune.trainables import full_config

    record = json.loads((run_dir / "hdmap_search.json").read_text())
    assert [s["label"] for s in record["start_points"]] == ["defaults", "start.yaml#1", "start.yaml#2"]
    assert any("'model.shots' dropped [500]" in note for note in record["space_notes"])
    trials = {}
    for params in run_dir.glob("*/params.json"):  # trainable_<id>_<n>_...: n counts trials from 1
        trials[int(re.match(r"trainable_[0-9a-f]+_(\d+)_", params.parent.name).group(1))] = json.loads(params.read_text())
    first, second = (trials[k] for k in sorted(trials)[:2])
    assert full_config(record["base_config"], first) == record["base_config"]
    assert json.loads(json.dumps(second)) == json.loads(json.dumps(record["start_points"][1]["point"]))
    text = (run_dir / "summary.md").read_text()
    versus = summary["versus_defaults"]
    assert versus["defaults_ran"] and ("Winner: the defaults" in text) == versus["defaults_won"]
    assert "95 % CI" in text and "| defaults |" in text and "| start.yaml#1 |" in text
    assert "Which settings mattered" in text
    assert summary["best"]["holdout"]["intervals"]["auroc"] is not None


@pytest.mark.slow  # two Ray searches: ~3 min on 2 idle cores; tests/test_band.py covers the trainable without Ray
def test_a_band_search_and_a_band_only_start_run_without_a_backbone(synth_root, tmp_path):
    """`hdmap tune --model band` (its packaged space) and a PatchCore space whose model.fusion offers band_only:
    the band detector alone is the second trial, needs no features, and its checkpoint reloads to its tune AUROC."""
    summary = run_search(SearchOptions(data_root=str(synth_root), domain="C", model="band", num_samples=3,
                                       storage=str(tmp_path / "runs"), name="band", cache_dir=str(tmp_path / "cache"),
                                       max_concurrent=2, verbose=0))
    assert summary["n_trials"] == 3 and summary["n_failed"] == 0 and summary["best"]["holdout"]["auroc"] is not None
    fused_space = tmp_path / "fused.yaml"
    fused_space.write_text(TINY_SPACE + "  model.fusion: {choice: [none, band_only]}\n")
    summary = run_search(_options(synth_root, fused_space, tmp_path, num_samples=2, name="fused"))
    assert summary["n_trials"] == 2 and summary["n_failed"] == 0
    band_trials = [p.parent for p in (tmp_path / "runs" / "fused").glob("*/params.json")
                   if json.loads(p.read_text()).get("model.fusion") == "band_only"]
    assert len(band_trials) == 1
    result = [json.loads(line) for line in (band_trials[0] / "result.json").read_text().splitlines() if line][-1]
    assert result["features_s"] == 0.0 and result["feature_cache_hits"] == 0
    metrics = evaluate_checkpoint(next(band_trials[0].glob("checkpoint_*")))
    assert metrics["tune"]["auroc"] == pytest.approx(result["tune_auroc"])
    assert "no backbone ran" in metrics["notes"][0]


def test_a_space_that_sets_the_split_is_the_split_of_every_trial_and_of_the_winners_evaluation(synth_root, tmp_path):
    space = tmp_path / "split.yaml"
    space.write_text(TINY_SPACE.replace("fixed:\n", "fixed:\n  split: {tune_fraction: 0.5, seed: 3}\n", 1))
    summary = run_search(_options(synth_root, space, tmp_path, num_samples=2, name="split"))
    run_dir = Path(summary["experiment"])
    saved = json.loads((run_dir / "split.json").read_text())
    assert (saved["tune_fraction"], saved["seed"]) == (0.5, 3)
    trials = [json.loads(p.read_text()) for p in run_dir.glob("trainable_*/checkpoint_*/trial_metrics.json")]
    assert len(trials) == 2
    for metrics in trials:
        assert metrics["config"]["split"] == {"tune_fraction": 0.5, "seed": 3}
        assert (metrics["split"]["tune_fraction"], metrics["split"]["seed"]) == (0.5, 3)
    winner = json.loads((run_dir / "best" / "metrics.json").read_text())
    assert (winner["split"]["tune_fraction"], winner["split"]["seed"]) == (0.5, 3)
    assert winner["split"]["n_tune"] == trials[0]["split"]["n_tune"]

    searched = tmp_path / "searched.yaml"
    searched.write_text(TINY_SPACE + "  split.seed: {choice: [0, 1]}\n")
    with pytest.raises(ConfigError, match="searches split.seed"):
        run_search(_options(synth_root, searched, tmp_path, num_samples=2, name="searched"))


def test_a_config_already_run_reuses_its_result_instead_of_fitting_again(synth_root, tmp_path):
    """A space with one choice: every trial after the defaults draws the defaults' config again. They report the
    first trial's result (marked), fit nothing, and the summary points them to its checkpoint."""
    space = tmp_path / "one.yaml"
    space.write_text(TINY_SPACE.split("params:")[0] + "params:\n  model.bank_mode: {choice: [mixed]}\n")
    options = _options(synth_root, space, tmp_path, num_samples=3, name="again")
    options.max_concurrent = 1  # one after the other: each finds the one before it finished
    summary = run_search(options)
    run_dir = Path(summary["experiment"])
    results = {}
    for path in run_dir.glob("trainable_*/result.json"):
        results[path.parent.name] = [json.loads(line) for line in path.read_text().splitlines() if line][-1]
    first = next(r for r in results.values() if not r.get("reused_from"))
    reused = [r for r in results.values() if r.get("reused_from")]
    assert len(results) == 3 and len(reused) == 2
    assert all(r["reused_from"] == first["trial_id"] and r["objective"] == first["objective"] for r in reused)
    assert len(list(run_dir.glob("trainable_*/checkpoint_*/model.ckpt"))) == 1  # one fit
    text = (run_dir / "summary.md").read_text()
    assert text.count(f"same config as {first['trial_id']}") == 2
    assert summary["best"]["checkpoint"].startswith(str(run_dir))


def test_tune_set_changes_the_base_settings_of_every_trial(synth_root, tmp_path):
    """`hdmap tune --set model.shots=16 --set model.reweight_k=3` on a space that searches neither: every trial
    (the defaults included) runs with them; the same --set on a space that searches model.shots is exit 2 naming
    it (tests/test_search_guards.py)."""
    from hdmap.cli.main import main

    space = tmp_path / "no_shots.yaml"
    space.write_text(TINY_SPACE.replace("  model.shots: {choice: [4, 500]}\n", ""))
    assert "model.shots" not in space.read_text()
    assert main(["tune", "--data-root", str(synth_root), "--space", str(space), "--num-samples", "2",
                 "--max-concurrent", "2", "--storage", str(tmp_path / "runs"), "--name", "set",
                 "--cache-dir", str(tmp_path / "cache"), "--set", "model.shots=16", "--set", "model.reweight_k=3"]) == 0
    configs = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "set").glob("trainable_*/checkpoint_*/"
                                                                                    "config.json")]
    assert len(configs) == 2 and all(c["model"]["shots"] == 16 and c["model"]["reweight_k"] == 3 for c in configs)
    record = json.loads((tmp_path / "runs" / "set" / "hdmap_search.json").read_text())
    assert record["base_config"]["model"]["shots"] == 16
    assert record["options"]["sets"] == ["model.shots=16", "model.reweight_k=3"]


def _study_trials(study: dict) -> list:
    """[value, Ray trial id, state] of each trial of the study, read by optuna.load_study in a fresh process."""
    reader = ("import json, sys, optuna\n"
              "s = optuna.load_study(study_name=sys.argv[1], storage=sys.argv[2])\n"
              "print(json.dumps([[t.value, t.user_attrs.get('ray_trial_id'), t.state.name] for t in s.trials]))")
    done = subprocess.run([sys.executable, "-c", reader, study["study_name"], study["storage"]], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_study_is_an_optuna_study_in_sqlite_that_a_fresh_process_reads_and_a_resume_grows(synth_root, space_file,
                                                                                              tmp_path):
    summary = run_search(_options(synth_root, space_file, tmp_path, num_samples=3, name="study"))
    study = summary["optuna_study"]
    assert study["storage"] == f"sqlite:///{tmp_path / 'runs' / 'study' / 'study.optuna.db'}"
    trials = _study_trials(study)
    assert len(trials) == 3 and all(state == "COMPLETE" for _, _, state in trials)
    reported = _finished_trials(tmp_path / "runs" / "study")
    assert {ray_id: value for value, ray_id, _ in trials} == pytest.approx(reported)

    with pytest.raises(ConfigError, match="begun with 3 trials; a resumed search can grow, not shrink"):
        run_search(_options(synth_root, space_file, tmp_path, num_samples=2, name="study", resume=True))
    grown = run_search(_options(synth_root, space_file, tmp_path, num_samples=5, name="study", resume=True))
    assert grown["n_trials"] == 5 and grown["status"] == "finished" and grown["optuna_study"] == study
    trials = _study_trials(study)
    assert len(trials) == 5 and all(state == "COMPLETE" for _, _, state in trials)
    reported_after = _finished_trials(tmp_path / "runs" / "study")
    assert {ray_id: value for value, ray_id, _ in trials} == pytest.approx(reported_after)
    assert all(reported_after[trial] == value for trial, value in reported.items())  # the first 3 kept, not rerun
    record = json.loads((tmp_path / "runs" / "study" / "hdmap_search.json").read_text())
    assert record["options"]["num_samples"] == 5


def test_optuna_dashboard_serves_a_finished_search_and_its_trials(synth_root, space_file, tmp_path):
    """optuna-dashboard (the `dashboard` extra) on 127.0.0.1 against a finished 2-trial search: its HTTP API lists
    the study and both trials with the objectives the trials reported. Bounded: 60 s to start, then stopped."""
    pytest.importorskip("optuna_dashboard", reason="the `dashboard` extra is not installed: pip install -e .[dashboard]")
    import socket
    import urllib.request

    summary = run_search(_options(synth_root, space_file, tmp_path, num_samples=2, name="served"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("optuna-dashboard")), summary["optuna_study"]["storage"],
                               "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as reply:
                    studies = json.loads(reply.read())["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies, "optuna-dashboard did not answer within 60 s"
        study = next(s for s in studies if s["study_name"] == "served")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0",
                                    timeout=10) as reply:
            trials = json.loads(reply.read())["trials"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    reported = _finished_trials(tmp_path / "runs" / "served")
    served = {next(a["value"] for a in t["user_attrs"] if a["key"] == "ray_trial_id"): t["values"][0] for t in trials}
    assert served == pytest.approx(reported) and len(served) == 2
