"""SIGTERM (a scheduler, `timeout`, a preempted node) ends every command at once with exit 143 and one named line,
leaving nothing half-written (results and cache entries are written under temporary names and renamed).

Lightning composes its own SIGTERM handler with one installed before it (it would otherwise finish the step and
exit 0 in silence); a search hands SIGTERM to Tune's own SIGINT handling, so it stops its trials and writes its
"interrupted" summary, then exits 143."""
from __future__ import annotations

import signal
from contextlib import contextmanager

TERMINATED_EXIT = 143  # 128 + SIGTERM, what a shell reports for a process ended by it
RECEIVED = {"sigterm": False, "installed": False}


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException: no `except Exception` on the way swallows it)."""


def _on_sigterm(signum, frame) -> None:
    first = not RECEIVED["sigterm"]
    RECEIVED["sigterm"] = True
    if first and signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN):
        signal.raise_signal(signal.SIGINT)  # a handler of its own (Tune's): let it stop as on Ctrl-C
        return
    raise Terminated()


@contextmanager
def sigterm_handled():
    """The handler for the block (a command), installed before any Trainer or Tuner so that theirs compose with
    it; the previous handler afterwards."""
    previous = signal.getsignal(signal.SIGTERM)
    RECEIVED.update(sigterm=False, installed=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        RECEIVED["installed"] = False
        signal.signal(signal.SIGTERM, previous)


def reinstall() -> None:
    """After ray.init, which replaces the driver's SIGTERM handler with a plain exit: ours again, if a command
    installed it."""
    if RECEIVED["installed"]:
        signal.signal(signal.SIGTERM, _on_sigterm)


def received() -> bool:
    return RECEIVED["sigterm"]
