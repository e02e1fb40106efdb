"""Progress of a long stage where a person waits: a live bar on a terminal; elsewhere (a log file, nohup, a Ray
worker's log) a line once the stage has run a few seconds, then at least every 30 s, and one when it ends."""
from __future__ import annotations

import sys
import time

FIRST_LINE_S = 5.0  # a stage shorter than this prints nothing in line mode
LINE_EVERY_S = 30.0


class StageProgress:
    """Count the work of one stage (`with StageProgress("coreset", total=picks) as progress: progress.advance()`).
    `advance` only counts and reads a clock: it never waits on a device."""

    def __init__(self, stage: str, total: int, unit: str = "", stream=None, clock=time.monotonic,
                 live: bool | None = None, enabled: bool = True):
        self.stage, self.total, self.unit = stage, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.clock = clock
        self.enabled = enabled
        self.live = enabled and (self.stream.isatty() if live is None else live)
        self.done = 0
        self.lines = 0
        self._bar = self._task = None

    def __enter__(self) -> "StageProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.finish()

    def start(self) -> "StageProgress":
        """Start the clock (and the bar); `with StageProgress(...)` calls it, as it calls `finish` at the end."""
        self.started = self.next_line = self.clock()
        self.next_line += FIRST_LINE_S
        if self.live:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.stage, total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.advance(self._task, count)
        elif self.enabled and self.clock() >= self.next_line:
            self._line()
            self.next_line = self.clock() + LINE_EVERY_S

    def _line(self, final: bool = False) -> None:
        elapsed = self.clock() - self.started
        unit = f" {self.unit}" if self.unit else ""
        if final:
            text = f"{self.stage}: {self.done}/{self.total}{unit} done in {elapsed:.0f} s"
        else:
            left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
            text = f"{self.stage}: {self.done}/{self.total}{unit} after {elapsed:.0f} s, about {left:.0f} s left"
        print(f"[hdmap] {text}", file=self.stream, flush=True)
        self.lines += 1

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.lines:  # a stage that said it was running also says when it ended
            self._line(final=True)
