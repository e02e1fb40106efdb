"""The toy kind's registry entry."""
from hdmap.config import SPLIT_DEFAULT
from hdmap.kinds.kind import ModelKind
from hdmap.run.record import trial_values
from toy_kind import pipeline
from toy_kind.settings import ToyRun


def defaults(real_data=False, backbone=None):
    return {"model_name": "toy", "toy": {"rows": 31}, "split": dict(SPLIT_DEFAULT)}


def validate(run):
    assert isinstance(run, ToyRun), "a kind receives its settings tree, not a mapping"


def fit_and_score(run, data, cache=None, progress=False, tune_only=False):
    return pipeline.fit_and_score(run, data, tune_only)


def score_saved(path, run, data, cache_dir=None, progress=False):
    return pipeline.score_saved(path, run, data)


def trial(run, data, cache, metric, repeats, report):
    module, _, metrics = pipeline.fit_and_score(run, data, tune_only=True)
    report(module, metrics, trial_values(metrics, metric))


TOY = ModelKind("toy", "row-energy z-score (a test of the registry)", defaults, validate, fit_and_score,
                score_saved, trial, settings=ToyRun)
