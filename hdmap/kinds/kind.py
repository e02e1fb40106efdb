"""What a model kind is: the one interface `hdmap fit-eval`, `hdmap eval` and the Tune trainable call. A kind owns
its defaults, the check of its settings, its fit-and-score, its scoring of a saved model and its search trial, and
says what the search and the docs need to know of it (hooks with defaults). A kind is one folder,
hdmap/kinds/<kind>/, and one line in registry.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from hdmap.run.settings import Run

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


def reads_every_key(key: str, sampled: dict) -> bool:
    return True


@dataclass(frozen=True)
class ModelKind:
    """One model kind. `defaults` gives a run config mapping (the edges merge files and --set onto it); every other
    callable takes the run's frozen settings tree (`run`, the kind's settings.py) and a `DomainData`:

    - defaults(real_data, backbone) -> the complete run config of this kind
    - validate(run) -> None: checks across settings; a ConfigError names the first bad key
    - fit_and_score(run, data, cache, progress, tune_only) -> (fitted module, outputs, metrics.json dict)
    - score_saved(path, run, data, cache_dir, progress) -> (outputs, metrics) of a checkpoint, not refitted
    - trial(run, data, cache, metric, repeats, report) -> None; calls `report` once, or every epoch

    The hooks below have defaults; a kind sets those that apply to it.
    """

    name: str
    description: str
    defaults: Defaults
    validate: Validate
    fit_and_score: FitAndScore
    score_saved: ScoreSaved
    trial: Trial
    settings: type  # the frozen settings tree of its runs: checked, then passed down
    iterative: bool = False  # trials report every epoch: the search adds ASHA
    supports_repeats: bool = False  # `--repeats` averages this kind's reference/coreset seeds
    preflight: Callable[[Run], None] | None = None  # run once in the driver before Ray starts (missing weights)
    # A run of this kind that another kind scores (fusion=band_only: the band detector alone): the other kind's run
    # config, or None. The registry dispatches it and keeps this run's settings in the record.
    delegate: Callable[[Run], dict | None] | None = None
    delegate_note: str = ""  # the note a delegated run's record starts with
    space: str | None = None  # its search spaces: search_spaces/<space>.yaml and <space>_quick.yaml (default: name)
    # Which searched keys a trial reads, given what was sampled before them (keys it does not read are not sampled)
    reads: Callable[[str, dict], bool] = reads_every_key
    # (space, base config, train maps, train truth) -> Limits of data-dependent settings (hdmap/tune/data_fit.py)
    space_limits: tuple[Callable, ...] = ()
    # (space, base config) -> [(label, config)]: start points a search evaluates right after the defaults
    extra_starts: Callable[[object, dict], list[tuple[str, dict]]] | None = None
    upgrade: Callable[[dict], dict] | None = None  # a run config recorded by an older hdmap -> today's keys
    # `hdmap predict`: load_saved(path, run) -> the fitted module; predict(module, run, maps, paths, cache, device,
    # domain) -> {'scores', 'patch_maps', 'route' (None: no gate used), 'band_rows' (optional)} of new maps;
    # predict_reads_train(run): whether predict needs the train maps of the run's domain (`domain`)
    load_saved: Callable[[Path, Run], object] | None = None
    predict: Callable[..., dict] | None = None
    predict_reads_train: Callable[[Run], bool] = lambda run: False
    # (space, base config, train maps, bytes of one map's features at (image_size, resize)) -> (bytes, what drives
    # them): the largest GPU memory a trial of the space needs, checked against a trial's share before a search
    gpu_memory: Callable[..., tuple[int, str]] | None = None
    docs_with: str | None = None  # docs/settings.md lists this kind in that kind's section (same settings tree)
    docs_note: str = ""  # a line under the kind's section of docs/settings.md

    @property
    def space_name(self) -> str:
        return self.space or self.name
