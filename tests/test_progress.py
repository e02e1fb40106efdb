import io

from hdmap.progress import StageProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_log_gets_a_line_after_a_few_seconds_then_every_30_s_and_at_the_end():
    clock, stream = Clock(), io.StringIO()
    with StageProgress("coreset", 100, "picks", stream=stream, clock=clock, live=False) as progress:
        for step in range(100):
            clock.now = step * 1.0  # one pick a second: 99 s in all
            progress.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[hdmap] coreset: 6/100 picks after 5 s, about")
    assert [line.split(": ")[1].split("/")[0] for line in lines[1:-1]] == ["36", "66", "96"]  # every 30 s
    assert lines[-1] == "[hdmap] coreset: 100/100 picks done in 99 s"


def test_a_short_stage_prints_nothing_and_a_quiet_one_never():
    clock, stream = Clock(), io.StringIO()
    with StageProgress("features", 10, stream=stream, clock=clock, live=False) as progress:
        clock.now = 4.0
        progress.advance(10)
    with StageProgress("features", 10, stream=stream, clock=clock, live=False, enabled=False) as progress:
        clock.now = 400.0
        progress.advance(10)
    assert stream.getvalue() == ""
