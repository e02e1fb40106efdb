"""A retry runs a trial whose worker or node was lost; a trial that failed in its own code is not run again."""
from types import SimpleNamespace

import pytest

from hdmap.tune.retries import earlier_error, lost_worker

LOST = """Failure # 1 (occurred at 2026-11-29_22-06-40)
ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.
The actor died because its node has died. Node Id: e62882c3
The actor never ran - it was cancelled before it started running.
"""
OWN = """Failure # 1 (occurred at 2026-11-29_22-06-40)
  File "hdmap/data/splits.py", line 40, in select_references
ValueError: asked for 500 references of condition 'cold' but the assignment has only 21
"""


def test_a_lost_node_is_told_apart_from_the_trials_own_error(tmp_path):
    assert earlier_error(tmp_path) is None
    (tmp_path / "error.txt").write_text(LOST)
    assert earlier_error(tmp_path) == "The actor died because its node has died. Node Id: e62882c3"
    assert lost_worker(earlier_error(tmp_path))
    (tmp_path / "error.txt").write_text(OWN)
    assert earlier_error(tmp_path).startswith("ValueError: asked for 500") and not lost_worker(earlier_error(tmp_path))
    later = (tmp_path / "error.txt").stat().st_mtime + 1
    assert earlier_error(tmp_path, since=later) is None  # an error of an earlier command: --retry-failed runs it


def test_a_trial_that_failed_in_its_own_code_is_not_run_again(tmp_path, monkeypatch):
    from ray import tune

    from hdmap.tune import trainables

    (tmp_path / "error.txt").write_text(OWN)
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_dir=lambda: str(tmp_path)))
    monkeypatch.setattr(trainables, "_domain", lambda **kwargs: pytest.fail("a repeated error must not refit"))
    with pytest.raises(RuntimeError, match="not retried: ValueError: asked for 500"):
        trainables.trainable({}, {}, {}, "accuracy", None)
