"""The registry of model kinds: name -> ModelKind. Adding a kind is one folder (hdmap/kinds/<kind>/) and one
`register(...)` line here. Every edge (CLI, config files, search trials, checkpoint records) goes through
`settings_of`, which also accepts the kinds' former names (with a note)."""
from __future__ import annotations

import sys

from hdmap.config import ConfigError, plain
from hdmap.kinds.band.kind import BAND
from hdmap.kinds.feclip.kind import FECLIP
from hdmap.kinds.kind import ModelKind
from hdmap.kinds.patchcore.kind import HDMAP_PATCHCORE, PATCHCORE
from hdmap.run.settings import Run
from hdmap.setting_rules import check_settings, from_plain

KINDS: dict[str, ModelKind] = {}
# former names of kinds -> today's (old configs, search spaces, records and checkpoints still load)
ALIASES = {"gated_patchcore": "hdmap_patchcore"}
_NOTED: set[str] = set()


def register(kind: ModelKind) -> ModelKind:
    """Add a kind (one line per kind, below)."""
    KINDS[kind.name] = kind
    return kind


register(HDMAP_PATCHCORE)
register(PATCHCORE)
register(BAND)
register(FECLIP)
MODELS = tuple(KINDS)
DEFAULT_MODEL = HDMAP_PATCHCORE.name


def current_name(name: str | None) -> str | None:
    """Today's name of a kind: a former name is translated, with a note printed once."""
    if name in ALIASES:
        if name not in _NOTED:
            _NOTED.add(name)
            print(f"[hdmap] note: model kind '{name}' is now called '{ALIASES[name]}' (the same model; the old name "
                  f"is accepted)", file=sys.stderr)
        return ALIASES[name]
    return name


def kind_of(config_or_name: dict | Run | str) -> ModelKind:
    """The kind a run config or settings tree (its `model_name`) or a name refers to; an unknown name is a
    ConfigError."""
    if isinstance(config_or_name, dict):
        name = config_or_name.get("model_name")
    elif isinstance(config_or_name, str):
        name = config_or_name
    else:
        name = config_or_name.model_name
    name = current_name(name)
    if name not in KINDS:
        raise ConfigError(f"model_name must be one of {tuple(KINDS)}, got {name!r}")
    return KINDS[name]


def default_config(real_data: bool = False, model_name: str | None = None, backbone: str | None = None) -> dict:
    """The complete defaults of a kind (default: hdmap_patchcore) on the embedded data or on real data."""
    return kind_of(model_name or DEFAULT_MODEL).defaults(real_data, backbone)


def validate(config: dict) -> dict:
    """Check every key and value of `config` against its kind's settings tree (type, choice, range), then the
    kind's own checks across settings; a ConfigError names the first bad key. Returns the config."""
    settings_of(config)
    return config


def upgraded(config: dict) -> dict:
    """A run config as today's hdmap names it: a former kind name translated, the kind's own upgrade of older keys."""
    kind = kind_of(config)
    config = {**config, "model_name": kind.name}
    return kind.upgrade(config) if kind.upgrade else config


def settings_of(config: dict | Run) -> Run:
    """The frozen settings tree of a run config, checked (a tree is returned as it is): the one conversion from the
    mappings of the edges (CLI, config files, search spaces and trials, checkpoint records) to what kinds,
    pipelines and jobs take."""
    if not isinstance(config, dict):
        return config
    kind = kind_of(config)
    config = {**config, "model_name": kind.name}
    check_settings("", config, kind.settings)
    run = from_plain(kind.settings, config)
    kind.validate(run)
    return run


def delegated(run: Run) -> Run | None:
    """The run of the kind that scores `run` when its kind hands it to another (fusion=band_only), else None."""
    kind = kind_of(run)
    other = kind.delegate(run) if kind.delegate else None
    return settings_of(other) if other is not None else None


def as_delegated(run: Run, inner: Run, metrics: dict) -> dict:
    """The record of a delegated run: this run's settings, the run that scored it, the kind's note first."""
    metrics.update({"model": run.model_name, "config": plain(run), "scored_by": plain(inner)})
    metrics["notes"] = [kind_of(run).delegate_note] + list(metrics.get("notes", []))
    return metrics


def fit_and_score(config: dict | Run, data, cache=None, progress: bool = False, tune_only: bool = False):
    """(fitted module, outputs, metrics.json dict) of any kind: what fit-eval and every trial run."""
    run = settings_of(config)
    inner = delegated(run)
    if inner is not None:
        module, outputs, metrics = kind_of(inner).fit_and_score(inner, data, cache, progress, tune_only)
        return module, outputs, as_delegated(run, inner, metrics)
    return kind_of(run).fit_and_score(run, data, cache, progress, tune_only)


def score_saved(path, config: dict | Run, data, cache_dir: str | None = None, progress: bool = False):
    """(outputs, metrics) of the model saved at `path`, scored with the function its run used (no refitting)."""
    run = settings_of(config)
    inner = delegated(run)
    if inner is not None:
        outputs, metrics = kind_of(inner).score_saved(path, inner, data, cache_dir, progress)
        return outputs, as_delegated(run, inner, metrics)
    return kind_of(run).score_saved(path, run, data, cache_dir, progress)


def trial(run: Run, data, cache, metric: str, repeats: int, report) -> None:
    """One search trial of any kind (a delegated run: the other kind's trial, recorded as this run)."""
    inner = delegated(run)
    if inner is None:
        return kind_of(run).trial(run, data, cache, metric, repeats, report)

    def report_as_run(module, metrics: dict, values: dict) -> None:
        report(module, as_delegated(run, inner, metrics), values)

    return kind_of(inner).trial(inner, data, cache, metric, repeats, report_as_run)


def load_for_prediction(path, config: dict | Run):
    """(the run whose kind scores new maps, its fitted module) of a saved run (a delegated run: the other kind's)."""
    run = settings_of(config)
    target = delegated(run) or run
    kind = kind_of(target)
    if kind.load_saved is None or kind.predict is None:
        raise ConfigError(f"model kind {kind.name!r} cannot score new maps (it has no load_saved/predict)")
    return target, kind.load_saved(path, target)
