"""What a model kind is: the one interface `hdmap fit-eval`, `hdmap eval` and the Tune trainable call. A kind owns
its defaults, the check of its settings, its fit-and-score, its scoring of a saved model and its search trial;
adding one is one module and one line in registry.py."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from hdmap.run.run_settings import Run

if TYPE_CHECKING:  # types only: a kind's module imports what it runs
    from hdmap.data.domain import DomainData
    from hdmap.features.cache import FeatureCache

# report(fitted module, metrics dict, values for Tune): the trainable saves the checkpoint and reports to Tune
TrialReport = Callable[[object, dict, dict], None]


class Defaults(Protocol):
    def __call__(self, real_data: bool = False, backbone: str | None = None) -> dict: ...


class Validate(Protocol):
    def __call__(self, run: Run) -> None: ...


class FitAndScore(Protocol):
    def __call__(self, run: Run, data: "DomainData", cache: "FeatureCache | None" = None, progress: bool = False,
                 tune_only: bool = False) -> tuple[object, dict, dict]: ...


class ScoreSaved(Protocol):
    def __call__(self, path: str | Path, run: Run, data: "DomainData", cache_dir: str | None = None,
                 progress: bool = False) -> tuple[dict, dict]: ...


class Trial(Protocol):
    def __call__(self, run: Run, data: "DomainData", cache: "FeatureCache", metric: str, repeats: int,
                 report: TrialReport) -> None: ...


@dataclass(frozen=True)
class ModelKind:
    """One model kind. `defaults` gives a run config mapping (the edges merge files and --set onto it); every other
    callable takes the run's frozen settings tree (`run`, hdmap/run/run_settings.py) and a `DomainData`:

    - defaults(real_data, backbone) -> the complete run config of this kind
    - validate(run) -> None: checks across settings; a ConfigError names the first bad key
    - fit_and_score(run, data, cache, progress, tune_only) -> (fitted module, outputs, metrics.json dict)
    - score_saved(path, run, data, cache_dir, progress) -> (outputs, metrics) of a checkpoint, not refitted
    - trial(run, data, cache, metric, repeats, report) -> None; calls `report` once, or every epoch
    """

    name: str
    description: str
    defaults: Defaults
    validate: Validate
    fit_and_score: FitAndScore
    score_saved: ScoreSaved
    trial: Trial
    settings: type  # the frozen settings tree of its runs (hdmap/run/run_settings.py): checked, then passed down
    iterative: bool = False  # trials report every epoch: the search adds ASHA
    supports_repeats: bool = False  # `--repeats` averages this kind's reference/coreset seeds
    preflight: Callable[[Run], None] | None = None  # run once in the driver before Ray starts (missing weights)


def trial_values(tune: dict, metric: str) -> dict:
    """What a trial reports to Tune from its tune metrics: the objective with its standard error and every metric."""
    objective = tune[metric]
    return {"objective": objective if objective is not None else -math.inf, "objective_se": tune["se"][metric],
            "tune_accuracy": tune["accuracy"], "tune_auroc": tune["auroc"], "tune_accuracy_cv": tune["accuracy_cv"]}
