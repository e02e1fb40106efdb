"""The registry of model kinds: name -> ModelKind. Adding a kind is one module and one line here."""
from __future__ import annotations

from hdmap.config import ConfigError
from hdmap.kinds.band import BAND
from hdmap.kinds.feclip import FECLIP
from hdmap.kinds.kind import ModelKind
from hdmap.kinds.patchcore import GATED_PATCHCORE, PATCHCORE
from hdmap.run.run_settings import Run
from hdmap.setting_rules import check_settings, from_plain

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (GATED_PATCHCORE, PATCHCORE, BAND, FECLIP)}
MODELS = tuple(KINDS)
DEFAULT_MODEL = GATED_PATCHCORE.name


def kind_of(config_or_name: dict | Run | str) -> ModelKind:
    """The kind a run config or settings tree (its `model_name`) or a name refers to; an unknown name is a
    ConfigError."""
    if isinstance(config_or_name, dict):
        name = config_or_name.get("model_name")
    elif isinstance(config_or_name, str):
        name = config_or_name
    else:
        name = config_or_name.model_name
    if name not in KINDS:
        raise ConfigError(f"model_name must be one of {tuple(KINDS)}, got {name!r}")
    return KINDS[name]


def default_config(real_data: bool = False, model_name: str | None = None, backbone: str | None = None) -> dict:
    """The complete defaults of a kind (default: gated PatchCore) on the embedded data or on real data."""
    return kind_of(model_name or DEFAULT_MODEL).defaults(real_data, backbone)


def validate(config: dict) -> dict:
    """Check every key and value of `config` against its kind's settings tree (type, choice, range), then the
    kind's own checks across settings; a ConfigError names the first bad key. Returns the config."""
    settings_of(config)
    return config


def settings_of(config: dict | Run) -> Run:
    """The frozen settings tree of a run config, checked (a tree is returned as it is): the one conversion from the
    mappings of the edges (CLI, config files, search spaces and trials, checkpoint records) to what kinds,
    pipelines and jobs take."""
    if not isinstance(config, dict):
        return config
    kind = kind_of(config)
    check_settings("", config, kind.settings)
    run = from_plain(kind.settings, config)
    kind.validate(run)
    return run


def fit_and_score(config: dict | Run, data, cache=None, progress: bool = False, tune_only: bool = False):
    """(fitted module, outputs, metrics.json dict) of any kind: what fit-eval and every trial run."""
    run = settings_of(config)
    return kind_of(run).fit_and_score(run, data, cache, progress, tune_only)


def score_saved(path, config: dict | Run, data, cache_dir: str | None = None, progress: bool = False):
    """(outputs, metrics) of the model saved at `path`, scored with the function its run used (no refitting)."""
    run = settings_of(config)
    return kind_of(run).score_saved(path, run, data, cache_dir, progress)
