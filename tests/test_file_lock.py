"""Locks on shared folders end in a named error instead of a hang when their holder died, and wait for a live one."""
import fcntl
import os
import threading
import time

import pytest

from hdmap import file_lock
from hdmap.file_lock import LockTimeoutError, locked


@pytest.fixture(autouse=True)
def fast_heartbeat(monkeypatch):
    monkeypatch.setattr(file_lock, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(file_lock, "POLL_S", 0.02)


def test_a_lock_left_by_a_dead_holder_is_a_named_error_not_a_hang(tmp_path):
    lock = tmp_path / "entry.lock"
    lock.write_text("node-7 pid 4242\n")
    with open(lock) as dead_holder:  # holds the lock and never beats, as a process that died on another node
        fcntl.flock(dead_holder, fcntl.LOCK_EX)
        old = time.time() - 600
        os.utime(lock, (old, old))
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="node-7 pid 4242.*has not renewed it") as error:
            with locked(lock, stale_s=1.0):
                pytest.fail("granted a held lock")
        assert str(lock) in str(error.value) and time.monotonic() - started < 5


def test_a_live_holder_is_waited_for_and_a_total_timeout_is_named(tmp_path):
    lock = tmp_path / "entry.lock"
    order = []
    holding = threading.Event()

    def holder():
        with locked(lock):
            holding.set()
            time.sleep(1.0)  # longer than stale_s: only its heartbeat keeps the waiter waiting
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait()
    with locked(lock, stale_s=0.5):
        order.append("waiter in")
    thread.join()
    assert order == ["holder done", "waiter in"]

    with open(lock) as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(LockTimeoutError, match="waited"):
            with locked(lock, stale_s=60, timeout_s=0.3):
                pass


def test_readers_share_the_lock(tmp_path):
    lock = tmp_path / "entry.lock"
    with locked(lock, shared=True):
        with locked(lock, shared=True, timeout_s=0.2):
            pass


@pytest.mark.parametrize("code", ["ENOSYS", "EOPNOTSUPP", "ENOLCK"])
def test_a_file_system_without_flock_runs_unlocked_with_a_note(code, tmp_path, monkeypatch, capsys):
    """Lustre / NFS mounted without flock: the lock is skipped and said once, never an unnamed failure."""
    import errno
    import fcntl

    from hdmap import file_lock

    def no_flock(handle, mode):
        raise OSError(getattr(errno, code), "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.setattr(file_lock, "_WITHOUT_LOCKS", set())
    ran = []
    with file_lock.locked(tmp_path / "a.lock"):
        ran.append(1)
    with file_lock.locked(tmp_path / "b.lock", shared=True):
        ran.append(2)
    assert ran == [1, 2]
    err = capsys.readouterr().err
    assert err.count("does not support flock") == 1 and errno.errorcode[getattr(errno, code)] in err


def test_other_lock_errors_are_not_taken_for_a_missing_flock(tmp_path, monkeypatch):
    import errno
    import fcntl

    from hdmap import file_lock

    monkeypatch.setattr(fcntl, "flock", lambda handle, mode: (_ for _ in ()).throw(OSError(errno.EBADF, "bad")))
    with pytest.raises(OSError, match="bad"):
        with file_lock.locked(tmp_path / "a.lock"):
            pass
