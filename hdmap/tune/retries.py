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


class OwnErrors:
    """Errors raised by the trials' own code, one file per trial id in the experiment's storage (a folder every node
    of a cluster reads, unlike a worker's local trial folder, where Tune never writes error.txt). A trial that finds
    its own record from this search command is not run again; a lost worker leaves none, so it is."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, trial_id: str) -> Path:
        return self.folder / f"{trial_id}.txt"

    def write(self, trial_id: str, message: str) -> None:
        from hdmap.atomic_files import write_text_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path(trial_id), message[:2000])

    def earlier(self, trial_id: str, since: float = 0.0) -> str | None:
        """The trial's own error recorded after `since` (the start of this search command: `--resume --retry-failed`
        runs it again), or None."""
        path = self.path(trial_id)
        if not path.is_file() or path.stat().st_mtime < since:
            return None
        return path.read_text(errors="replace").strip()[:200] or "an earlier attempt failed"
