"""Which failed trial attempts are worth a retry: a lost worker or node (Ray's words: the actor or node died or was
terminated) is; an error the trial's own code raised is not, since it would only fail again."""
from __future__ import annotations

from pathlib import Path

LOST_WORKER_WORDS = ("died", "terminated", "node was", "heartbeat", "OutOfMemoryError", "killed")


def earlier_error(trial_dir: Path, since: float = 0.0) -> str | None:
    """The error of an earlier attempt of this trial (Ray writes error.txt into the trial folder) written after
    `since` (a time stamp: the start of this search command, so `--resume --retry-failed` may run it again), or
    None."""
    error = Path(trial_dir) / "error.txt"
    if not error.is_file() or error.stat().st_mtime < since:
        return None
    lines = [line.strip() for line in error.read_text(errors="replace").splitlines() if line.strip()]
    lost = sorted((line for line in lines if lost_worker(line)), key=lambda line: "node" not in line)  # node first
    return ((lost[0] if lost else lines[-1]) if lines else "an earlier attempt failed")[:200]


def lost_worker(message: str) -> bool:
    return any(word in message for word in LOST_WORKER_WORDS)
