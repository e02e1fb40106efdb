"""Ends the Ray processes a search started for itself when the search's process ends without stopping them.

`kill -9` of `hdmap tune` (or a crash) leaves the local Ray cluster it started: Ray's agents go on for minutes. A
small watcher process holds one end of a pipe to the search and, while the search lives, notes every process below
it (pid and start time, each second); every process of the cluster also inherits a marker in its environment (which
a process that retitles itself, as Ray's workers do, may overwrite: hence both). When the pipe closes (the search
ended, however), the watcher waits a grace period for Ray's own shutdown, then ends what is left (SIGTERM, then
SIGKILL), prints a line and records it in the experiment folder. A cluster the search joined (`--address`) is never
touched. Processes are read with psutil (Linux and macOS; elsewhere, where a process's environment cannot be read,
it is off)."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psutil

MARK = "HDMAP_RAY_OWNER"
RECORD = "ray_processes_ended.json"
GRACE_S = float(os.environ.get("HDMAP_RAY_REAP_GRACE_S", 10))  # Ray's own shutdown ends its processes in ~2 s
_watchers: list[subprocess.Popen] = []  # the driver keeps each watcher's pipe open for as long as it lives


def supported() -> bool:
    """Whether this system lets a process read another's environment (the marker)."""
    try:
        psutil.Process().environ()
    except (psutil.Error, NotImplementedError, AttributeError):
        return False
    return True


@contextmanager
def marked_ray_start(exp_dir: Path):
    """Around `ray.init` of a local cluster: its processes inherit the marker; a watcher starts for them."""
    if not supported():
        yield
        return
    token = uuid.uuid4().hex
    before = os.environ.get(MARK)
    os.environ[MARK] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MARK, None)
        else:
            os.environ[MARK] = before
    env = {k: v for k, v in os.environ.items() if k != MARK}
    _watchers.append(subprocess.Popen([sys.executable, "-m", "hdmap.tune.ray_reaper", token,
                                       str(exp_dir / RECORD), str(os.getpid())],
                                      stdin=subprocess.PIPE, env=env, start_new_session=True))


def marked(token: str) -> list[int]:
    """Processes (other than this one) whose environment carries the marker `token`."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARK) == token:
                found.append(process.pid)
        except (psutil.Error, OSError):  # gone, or not ours
            continue
    return found


def _name(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:120]
    except psutil.Error:
        return "?"


def _started(pid: int) -> float | None:
    """The start time of a running process, None when it is gone or a zombie."""
    try:
        process = psutil.Process(pid)
        return None if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) else process.create_time()
    except psutil.Error:
        return None


def alive(pid: int) -> bool:
    """Running (a zombie, which waits only for its parent to collect it, has ended)."""
    return _started(pid) is not None


def end(pids: list[int], wait_s: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + wait_s
        while time.time() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)


def descendants(root: int) -> dict[int, float]:
    """pid -> start time of every running process below `root`."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for child in children:
        if (started := _started(child.pid)) is not None:
            found[child.pid] = started
    return found


def still_running(seen: dict[int, float]) -> list[int]:
    """The processes of `seen` that run yet (the same pid with the same start time: not a reused pid)."""
    return [pid for pid, start in seen.items() if _started(pid) == start]


def watch(token: str, record: Path, driver: int) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the search's Ctrl-C or its scheduler's SIGTERM is not for the watcher
    seen: dict[int, float] = {}
    pipe = sys.stdin.fileno()
    while True:  # until the search's end of the pipe closes: the search ended, however
        if select.select([pipe], [], [], 1.0)[0] and os.read(pipe, 4096) == b"":
            break
        seen.update(descendants(driver))
    seen.pop(os.getpid(), None)
    time.sleep(GRACE_S)
    left = sorted(set(still_running(seen)) | set(marked(token)))
    if not left:
        return 0
    names = {pid: _name(pid) for pid in left}
    end(left)
    print(f"[hdmap] the search (pid {driver}) ended without stopping its Ray cluster; ended {len(left)} Ray "
          f"process(es) it left (recorded in {record})", file=sys.stderr)
    try:
        record.write_text(json.dumps({"driver_pid": driver, "ended_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "grace_s": GRACE_S, "processes": names}, indent=2))
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(watch(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
