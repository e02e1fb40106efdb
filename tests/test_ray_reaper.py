"""A search killed with SIGKILL leaves no Ray process behind: the watcher ends what carries the search's marker."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hdmap.tune import ray_reaper

pytestmark = pytest.mark.skipif(not ray_reaper.supported(), reason="the watcher reads other processes' environments (psutil: Linux, macOS)")
REPO = Path(__file__).resolve().parents[1]

DRIVER = """
import subprocess, sys, time
from pathlib import Path
from hdmap.tune.ray_reaper import marked_ray_start
with marked_ray_start(Path(sys.argv[1])):
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # stands for a Ray agent
print(agent.pid, flush=True)
time.sleep(300)
"""
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and ray_reaper.alive(pid):
        time.sleep(0.1)
    return not ray_reaper.alive(pid)


def test_what_a_killed_driver_started_is_ended_and_recorded_and_nothing_else(tmp_path):
    env = {**os.environ, "HDMAP_RAY_REAP_GRACE_S": "0.5"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env, stderr=subprocess.DEVNULL)
    agent = int(driver.stdout.readline())
    bystander = subprocess.Popen(SLEEPER)  # not the driver's: must survive
    try:
        assert ray_reaper.marked(ray_reaper_token(agent)) == [agent]
        time.sleep(1.5)  # the watcher notes the processes below the driver each second
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        assert _wait_gone(agent, 20), "the driver's process outlived the killed driver"
        assert bystander.poll() is None, "a process that was not the driver's was ended"
        deadline = time.time() + 10
        while time.time() < deadline and not (tmp_path / ray_reaper.RECORD).exists():
            time.sleep(0.1)
        record = json.loads((tmp_path / ray_reaper.RECORD).read_text())
        assert record["driver_pid"] == driver.pid and list(record["processes"]) == [str(agent)]
    finally:
        bystander.kill()
        try:
            os.kill(agent, signal.SIGKILL)
        except OSError:
            pass


def test_a_retitled_process_without_the_marker_is_found_below_the_driver():
    child = subprocess.Popen(SLEEPER)  # no marker: found only as a descendant
    try:
        time.sleep(0.2)
        seen = ray_reaper.descendants(os.getpid())
        assert child.pid in seen and ray_reaper.still_running({child.pid: seen[child.pid]}) == [child.pid]
        assert ray_reaper.still_running({child.pid: seen[child.pid] + 1}) == []  # a reused pid is not ours
    finally:
        child.kill()
        child.wait()


def ray_reaper_token(pid: int) -> str:
    """The marker a process carries in its environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v for v in environ if v.startswith(ray_reaper.MARK.encode() + b"=")).split(b"=", 1)[1].decode()


def test_a_driver_that_stops_its_processes_itself_leaves_no_record(tmp_path):
    script = """
import subprocess, sys
from pathlib import Path
from hdmap.tune.ray_reaper import marked_ray_start
with marked_ray_start(Path(sys.argv[1])):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
child.kill(); child.wait()
"""
    env = {**os.environ, "HDMAP_RAY_REAP_GRACE_S": "0.2"}
    assert subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, timeout=60).returncode == 0
    time.sleep(2)
    assert not (tmp_path / ray_reaper.RECORD).exists()


@pytest.mark.slow
def test_kill_9_of_a_real_search_leaves_no_ray_process_after_the_grace_period(synth_root, tmp_path):
    from conftest import TINY_SPACE

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    exp_dir = tmp_path / "runs" / "killed"
    search = subprocess.Popen([str(Path(sys.executable).with_name("hdmap")), "tune", "--data-root", str(synth_root),
                               "--space", str(space), "--num-samples", "8", "--max-concurrent", "1",
                               "--storage", str(tmp_path / "runs"), "--name", "killed",
                               "--cache-dir", str(tmp_path / "cache")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "HDMAP_RAY_REAP_GRACE_S": "3"})
    deadline = time.time() + 240
    while time.time() < deadline and not list(exp_dir.glob("*/result.json")):
        time.sleep(0.2)
    token = ray_reaper_token(next(pid for pid in _children(search.pid) if _has_mark(pid)))
    assert len(ray_reaper.marked(token)) >= 3  # gcs, raylet, agents, the trial's worker ...
    search.send_signal(signal.SIGKILL)
    search.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline and ray_reaper.marked(token):
        time.sleep(0.5)
    assert ray_reaper.marked(token) == [], "Ray processes outlived the killed search by 30 s"
    deadline = time.time() + 15
    while time.time() < deadline and not (exp_dir / ray_reaper.RECORD).exists():
        time.sleep(0.2)
    record = json.loads((exp_dir / ray_reaper.RECORD).read_text())
    assert record["driver_pid"] == search.pid and any("Agent" in name for name in record["processes"].values())


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split(") ")[-1].split()[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def _has_mark(pid: int) -> bool:
    try:
        return ray_reaper.MARK.encode() + b"=" in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
