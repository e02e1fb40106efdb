"""The search on a Ray cluster, proven on one CPU machine: a 2-node local cluster (token authentication, as
`ray start` sets it up) running `hdmap tune --address` with storage and feature cache on a shared folder, a worker
node killed in the middle of a trial, and 2 GPUs declared to Ray so that half-GPU trials share them."""
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import TINY_SPACE

RAY = str(Path(sys.executable).with_name("ray"))
HDMAP = str(Path(sys.executable).with_name("hdmap"))
SPACE = TINY_SPACE.replace("[4, 500]", "[4, 8]")  # every trial can finish


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _ray_running() -> bool:
    return subprocess.run(["pgrep", "-f", "ray/core/src/ray/raylet/raylet"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """Head and worker node, 1 CPU each, on this machine; the shared folder stands for a network file system."""
    import ray

    ray.shutdown()  # an in-process session of an earlier test
    if _ray_running():
        pytest.skip("another Ray instance runs on this machine; this test would have to stop it (ray stop)")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4"}
    head, head_manager, head_objects, worker_manager, worker_objects = _free_ports(5)
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", "--port", str(head), "--include-dashboard", "false",
                    "--node-manager-port", str(head_manager), "--object-manager-port", str(head_objects)] + common,
                   env=env, check=True, capture_output=True)
    subprocess.run([RAY, "start", "--address", f"127.0.0.1:{head}", "--node-manager-port", str(worker_manager),
                    "--object-manager-port", str(worker_objects)] + common, env=env, check=True, capture_output=True)
    try:
        yield {"address": f"127.0.0.1:{head}", "env": env, "worker_manager_port": worker_manager}
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)


def _tune(cluster, synth_root, shared, name, space) -> subprocess.Popen:
    command = [HDMAP, "tune", "--address", cluster["address"], "--data-root", str(synth_root), "--space", str(space),
               "--num-samples", "4", "--max-concurrent", "2", "--storage", str(shared / "runs"),
               "--cache-dir", str(shared / "cache"), "--name", name]
    return subprocess.Popen(command, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _placements(exp_dir: Path) -> list[dict]:
    return [json.loads(path.read_text())["placement"] for path in exp_dir.glob("trainable_*/checkpoint_*/"
                                                                              "trial_metrics.json")]


@pytest.mark.slow
def test_a_search_on_two_nodes_uses_both_reloads_its_best_and_survives_losing_a_node(two_node_cluster, synth_root,
                                                                                     tmp_path):
    shared = tmp_path / "shared"
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    search = _tune(two_node_cluster, synth_root, shared, "both_nodes", space)
    output, _ = search.communicate(timeout=480)
    assert search.returncode == 0, output[-3000:]
    exp_dir = shared / "runs" / "both_nodes"
    placements = _placements(exp_dir)
    assert len(placements) == 4 and len({p["node_id"] for p in placements}) == 2  # trials ran on both nodes
    assert all(p["host"] == socket.gethostname() for p in placements)
    summary = json.loads((exp_dir / "summary.json").read_text())
    assert len(summary["placement"]) == 2 and "## Where trials ran" in (exp_dir / "summary.md").read_text()
    assert any((shared / "cache").iterdir())  # the feature cache on the shared folder served the trials
    evaluated = subprocess.run([HDMAP, "eval", str(exp_dir), "--out", str(tmp_path / "eval")], env=two_node_cluster[
        "env"], capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    reloaded = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert reloaded["holdout"]["auroc"] == summary["best"]["holdout"]["auroc"]

    lost = _tune(two_node_cluster, synth_root, shared, "lost_node", space)
    exp_dir = shared / "runs" / "lost_node"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(exp_dir.glob("trainable_*"))) < 2:
        time.sleep(0.5)
    time.sleep(2)  # both running trials are starting: one on each node
    raylet = subprocess.run(["pgrep", "-f", f"node_manager_port={two_node_cluster['worker_manager_port']}"],
                            capture_output=True, text=True).stdout.split()
    assert raylet, "the worker node's raylet was not found"
    subprocess.run(["kill", "-9", *raylet])
    output, _ = lost.communicate(timeout=480)
    assert lost.returncode == 0, output[-3000:]
    summary = json.loads((exp_dir / "summary.json").read_text())
    assert summary["n_trials"] == 4 and summary["n_failed"] == 0 and summary["n_retried"] >= 1
    assert "finished after a retry" in (exp_dir / "summary.md").read_text()


def _ran_where_ray_put_it(placement: dict) -> bool:
    """On a GPU its torch saw (a GPU machine), or on the CPU with the note (this CPU machine, or a declared GPU id the
    machine does not have)."""
    if placement["device"] == "cuda":
        return bool(placement["gpu_name"]) and placement["visible_devices"] == placement["gpu_ids"]
    return "torch sees no CUDA" in placement["placement_note"]


@pytest.mark.slow
def test_auto_shares_two_declared_gpus_over_four_trials_and_a_0_gpu_search_hides_them(synth_root, tmp_path,
                                                                                        monkeypatch):
    """Ray is told of 2 GPUs: `--gpus-per-trial auto` with 4 concurrent trials gives each half a GPU, so 4 trials
    hold shares of both GPUs at once; each trial runs where Ray put it (here: torch sees no CUDA, so on the CPU,
    noted). A search with 0 GPUs per trial on the same cluster hides every GPU from its trials."""
    import ray

    from hdmap.tune.runner import SearchOptions, run_search

    ray.shutdown()
    monkeypatch.setenv("HDMAP_ALLOW_CPU_FOR_GPU", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # the declared GPUs are not there: trials run on the CPU, noted
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1", "HDMAP_ALLOW_CPU_FOR_GPU": "1"}})
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    lowest = [2.0]
    done = threading.Event()

    def watch():  # Ray's own accounting: the free GPU share while the trials hold theirs
        while not done.is_set():
            lowest[0] = min(lowest[0], ray.available_resources().get("GPU", 0.0))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    common = dict(data_root=str(synth_root), space=str(space), storage=str(tmp_path / "runs"),
                  cache_dir=str(tmp_path / "cache"), verbose=0)
    try:
        summary = run_search(SearchOptions(num_samples=4, max_concurrent=4, cpus_per_trial=0.5, gpus_per_trial="auto",
                                           name="gpus", **common))
        done.set()
        hidden = run_search(SearchOptions(num_samples=2, max_concurrent=2, cpus_per_trial=0.5, gpus_per_trial=0,
                                          name="no_gpus", **common))
    finally:
        done.set()
        watcher.join()
        ray.shutdown()
    assert summary["n_trials"] == 4 and summary["n_failed"] == 0
    assert lowest[0] == 0.0  # 4 x 0.5 of the 2 GPUs taken at the same time
    placements = _placements(tmp_path / "runs" / "gpus")
    assert sorted(p["gpu_ids"] for p in placements) == ["0", "0", "1", "1"]  # two trials per GPU
    assert all(p["gpu_share"] in (0.0, 0.5) and _ran_where_ray_put_it(p) for p in placements)
    if any(p["device"] == "cpu" for p in placements):
        assert "torch sees no CUDA: it ran on the CPU" in (tmp_path / "runs" / "gpus" / "summary.md").read_text()
    assert hidden["n_trials"] == 2 and hidden["n_failed"] == 0
    for placement in _placements(tmp_path / "runs" / "no_gpus"):
        assert placement["gpu_ids"] == "" and placement["visible_devices"] == "" and placement["device"] == "cpu"


@pytest.mark.slow
def test_trials_that_reserve_task_bundles_spread_their_fits_over_them(two_node_cluster, synth_root, tmp_path):
    """--trial-tasks 1: each trial's placement group holds its own bundle and one for its fit's tasks (SPREAD: one on
    each node here); the fit's feature extraction runs as tasks there and the trial records where they ran."""
    shared = tmp_path / "shared"
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    command = [HDMAP, "tune", "--address", two_node_cluster["address"], "--data-root", str(synth_root), "--space",
               str(space), "--num-samples", "2", "--max-concurrent", "1", "--storage", str(shared / "runs"),
               "--no-cache", "--name", "trial_tasks", "--trial-tasks", "1"]
    search = subprocess.run(command, env=two_node_cluster["env"], capture_output=True, text=True, timeout=480)
    assert search.returncode == 0, (search.stdout + search.stderr)[-3000:]
    records = [json.loads(path.read_text()) for path in (shared / "runs" / "trial_tasks").glob(
        "trainable_*/checkpoint_*/trial_metrics.json")]
    assert len(records) >= 2 and all(sum(r["spread"]["features"].values()) >= 2 for r in records)  # train + test
