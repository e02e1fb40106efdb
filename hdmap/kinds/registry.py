"""The registry of model kinds: name -> ModelKind. Adding a kind is one module and one line here."""
from __future__ import annotations

from hdmap.config import ConfigError
from hdmap.kinds.band import BAND
from hdmap.kinds.feclip import FECLIP
from hdmap.kinds.kind import ModelKind
from hdmap.kinds.patchcore import GATED_PATCHCORE, PATCHCORE
from hdmap.setting_rules import check_settings

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (GATED_PATCHCORE, PATCHCORE, BAND, FECLIP)}
MODELS = tuple(KINDS)
DEFAULT_MODEL = GATED_PATCHCORE.name


def kind_of(config_or_name: dict | str) -> ModelKind:
    """The kind a run config (its `model_name`) or a name refers to; an unknown name is a ConfigError."""
    name = config_or_name.get("model_name") if isinstance(config_or_name, dict) else config_or_name
    if name not in KINDS:
        raise ConfigError(f"model_name must be one of {tuple(KINDS)}, got {name!r}")
    return KINDS[name]


def default_config(real_data: bool = False, model_name: str | None = None, backbone: str | None = None) -> dict:
    """The complete defaults of a kind (default: gated PatchCore) on the embedded data or on real data."""
    return kind_of(model_name or DEFAULT_MODEL).defaults(real_data, backbone)


def validate(config: dict) -> dict:
    """Check every key and value of `config` against its kind's settings tree (type, choice, range), then the
    kind's own checks across settings; a ConfigError names the first bad key. Returns the config."""
    kind = kind_of(config)
    if kind.settings is not None:
        check_settings("", config, kind.settings)
    kind.validate(config)
    return config


def fit_and_score(config: dict, data, cache=None, progress: bool = False, tune_only: bool = False):
    """(fitted module, outputs, metrics.json dict) of any kind: what fit-eval and every trial run."""
    return kind_of(config).fit_and_score(config, data, cache, progress, tune_only)


def score_saved(path, config: dict, data, cache_dir: str | None = None, progress: bool = False):
    """(outputs, metrics) of the model saved at `path`, scored with the function its run used (no refitting)."""
    return kind_of(config).score_saved(path, config, data, cache_dir, progress)
