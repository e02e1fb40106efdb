"""Locks on shared folders (feature cache, coreset store) that cannot hang a search: a holder keeps its lock file's
time stamp fresh (a heartbeat thread), and a waiter gives up with a named error when the holder's heartbeat stops (a
dead node's lock left behind on a network file system) or after a total timeout. On a file system without `flock`
(Lustre or NFS mounted without it: ENOSYS, EOPNOTSUPP, ENOLCK) the lock is skipped with a printed note: the files the
locks guard are written atomically (a temporary file renamed into place), so concurrent writers waste work, never
corrupt it; only two searches of one experiment are then not kept apart."""
from __future__ import annotations

import errno
import fcntl
import os
import sys
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

HEARTBEAT_S = 10.0
STALE_S = float(os.environ.get("HDMAP_LOCK_STALE_S", 120))  # a holder silent this long is taken for dead
TIMEOUT_S = float(os.environ.get("HDMAP_LOCK_TIMEOUT_S", 6 * 3600))  # the longest any wait may last
POLL_S = 0.2
NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)  # a file system without flock
_WITHOUT_LOCKS: set[str] = set()  # folders already said to run without locks


class LockTimeoutError(RuntimeError):
    """A lock on a shared folder was not granted: its holder stopped beating, or the wait ran out."""


class LockHeldError(RuntimeError):
    """A lock asked for without waiting is held by another process (named in the message)."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "an unknown process"
    except OSError:
        return "an unknown process"


@contextmanager
def locked(path: str | Path, shared: bool = False, stale_s: float | None = None, timeout_s: float | None = None,
           wait: bool = True):
    """Hold `path` (a lock file) exclusively, or `shared` with other readers, while the block runs; `wait=False`:
    a LockHeldError naming the holder at once if another process holds it."""
    path = Path(path)
    stale_s = STALE_S if stale_s is None else stale_s
    timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(path, "a+") as handle:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise LockHeldError(f"{path}: held by {_holder(path)}") from None
                silent = time.time() - path.stat().st_mtime
                waited = time.monotonic() - started
                dead = silent > stale_s and waited > 2 * HEARTBEAT_S  # the holder had time to beat
                if dead or waited > timeout_s:
                    why = (f"its holder ({_holder(path)}) has not renewed it for {silent:.0f} s (a process or node "
                           f"that died holding it?)" if dead else f"waited {waited:.0f} s")
                    raise LockTimeoutError(f"{path}: lock not granted: {why}. If no hdmap process uses this folder, "
                                           f"delete {path} and rerun (HDMAP_LOCK_STALE_S / HDMAP_LOCK_TIMEOUT_S "
                                           f"set the limits)") from None
                time.sleep(POLL_S)
            except OSError as error:
                if error.errno not in NO_FLOCK:
                    raise
                note_without_locks(path, error)
                yield  # the file system has no locks: the block runs unlocked (see the module's note)
                return
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{socket.gethostname()} pid {os.getpid()}\n")
            handle.flush()
        stop = threading.Event()
        beat = threading.Thread(target=_beat, args=(path, stop), daemon=True)  # readers beat too: a writer waits
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            fcntl.flock(handle, fcntl.LOCK_UN)


def note_without_locks(path: Path, error: OSError) -> None:
    """Say once per folder that its file system has no flock and hdmap runs there without locks."""
    folder = str(path.parent)
    if folder not in _WITHOUT_LOCKS:
        _WITHOUT_LOCKS.add(folder)
        print(f"[hdmap] note: {folder}: this file system does not support flock ({errno.errorcode.get(error.errno, '?')}"
              f"): hdmap runs there without locks (its files are still written atomically; two searches of one "
              f"experiment are not kept apart). Mount it with flock (NFS: local_lock=none; Lustre: -o flock) to "
              f"have them", file=sys.stderr)


def _beat(path: Path, stop: threading.Event) -> None:
    while True:
        try:
            os.utime(path)
        except OSError:
            pass
        if stop.wait(HEARTBEAT_S):
            return
