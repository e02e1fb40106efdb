"""A retry runs a trial whose worker or node was lost; a trial that failed in its own code is not run again."""
from types import SimpleNamespace

import pytest

import torch

from hdmap.tune.retries import OwnErrors, earlier_error, lost_worker

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


def _trial_context(monkeypatch, trial_id="abc_00001"):
    from ray import tune

    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: trial_id))
    for name in ("CUDA_VISIBLE_DEVICES", "HDMAP_ACCELERATOR"):  # a trial without GPUs sets them: restored after
        monkeypatch.delenv(name, raising=False)


def test_a_trial_that_failed_in_its_own_code_is_not_run_again(tmp_path, monkeypatch):
    """The record lies in the experiment's storage (every node reads it), written by the failing attempt itself."""
    from hdmap.tune import trainables

    _trial_context(monkeypatch)
    errors = tmp_path / "trial_errors"

    def fails(*args, **kwargs):
        raise ValueError("asked for 500 references of condition 'cold' but the assignment has only 21")

    monkeypatch.setattr(trainables, "_run_trial", fails)
    with pytest.raises(ValueError, match="asked for 500"):
        trainables.trainable({}, {}, {}, "accuracy", None, errors_dir=str(errors))
    assert OwnErrors(errors).earlier("abc_00001").startswith("ValueError: asked for 500")
    monkeypatch.setattr(trainables, "_run_trial", lambda *a, **k: pytest.fail("a repeated error must not refit"))
    with pytest.raises(RuntimeError, match="not retried: ValueError: asked for 500"):
        trainables.trainable({}, {}, {}, "accuracy", None, errors_dir=str(errors))
    later = OwnErrors(errors).path("abc_00001").stat().st_mtime + 1
    assert OwnErrors(errors).earlier("abc_00001", since=later) is None  # --resume --retry-failed runs it again
    assert OwnErrors(errors).earlier("abc_00002") is None  # a lost worker writes nothing: Ray retries it


def test_cuda_out_of_memory_is_the_trials_own_error_naming_what_to_lower(tmp_path, monkeypatch):
    from hdmap.tune import trainables
    from hdmap.tune.trial_devices import TrialGpuMemoryError

    _trial_context(monkeypatch)

    def runs_out(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainables, "_run_trial", runs_out)
    with pytest.raises(TrialGpuMemoryError, match="Tried to allocate 2.00 GiB.*--max-concurrent.*model.bank_size"):
        trainables.trainable({}, {}, {}, "accuracy", None, errors_dir=str(tmp_path))
    assert "TrialGpuMemoryError" in OwnErrors(tmp_path).earlier("abc_00001")  # so it is not retried
