"""Search spaces as data: a YAML file -> an Optuna define-by-run function (conditionals included) or a
Ray Tune param space (when nothing is conditional).

Format:
    model_name: hdmap_patchcore
    metric: accuracy_cv             # objective on the tune split: accuracy_cv | accuracy | auroc
    fixed: {backbone: {...}, ...}   # settings merged into the defaults, not searched
    params:                         # dotted keys of the run config
      model.bank_mode: {choice: [mixed, gated, soft]}
      model.coreset_ratio: {loguniform: [0.01, 0.5]}
      model.reweight_k: {int: [1, 9]}
      image_size: {uniform: [224, 448], step: 14}      # optional step (float/int grid)
      model.gate.percentile: {uniform: [70, 99], when: {model.gate.kind: intensity}}
A `when` names earlier parameters and the value (or list of values) they must have. Beyond `when`, a parameter the
model kind does not read given what was sampled before it is not sampled (`ModelKind.reads`: e.g. PatchCore's settings
when model.fusion=band_only): list the parameters that switch others off first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hdmap.features.backbones import BACKBONES, preset_settings
from hdmap.config import ConfigError, merge, nest, safe_yaml
from hdmap.kinds.registry import DEFAULT_MODEL, current_name, default_config, kind_of, validate

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
METRICS = ("accuracy_cv", "accuracy", "auroc")


@dataclass
class Param:
    key: str
    distribution: str  # choice | uniform | loguniform | int (DISTRIBUTIONS)
    values: list
    step: float | None = None
    when: dict = field(default_factory=dict)


@dataclass
class SearchSpace:
    model_name: str
    metric: str
    fixed: dict
    params: list[Param]
    source: str = ""
    notes: list[str] = field(default_factory=list)  # what fitting the space to the backbone and the data dropped

    def base_config(self, real_data: bool = False, backbone: str | None = None) -> dict:
        """Defaults of the space's model (with `backbone`'s presets when given, else the presets of the backbone the
        space names), then the space's fixed settings (a fixed backbone of the space yields to an explicit
        `backbone`)."""
        config = merge(default_config(real_data, self.model_name), {"model_name": self.model_name})
        named = (self.fixed.get("backbone") or {}).get("name")
        if named in BACKBONES and not backbone and "backbone" in config:
            config = merge(config, preset_settings(named))  # the named backbone's presets for what the space leaves
        config = merge(config, self.fixed)
        if backbone:
            config = merge(config, preset_settings(backbone))
        return config

    def largest(self, key: str, base_config: dict) -> float:
        """The largest value `key` (a dotted path) can take in a trial: the searched maximum, else the base value."""
        value = base_config
        for part in key.split("."):
            value = value[part]
        for param in self.params:
            if param.key == key:
                return max(param.values)
        return value

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params)


def _error(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: parameter '{key}': {problem}")


def parse_param(key: str, spec, source: str, earlier: list["Param"]) -> Param:
    if not isinstance(spec, dict):
        raise _error(source, key, f"expected a mapping like {{choice: [...]}}, got {spec!r}")
    unknown = set(spec) - set(DISTRIBUTIONS) - {"step", "when"}
    if unknown:
        raise _error(source, key, f"unknown field(s) {sorted(unknown)}; use one of {DISTRIBUTIONS}, step, when")
    named = [k for k in DISTRIBUTIONS if k in spec]
    if len(named) != 1:
        raise _error(source, key, f"needs exactly one of {DISTRIBUTIONS}")
    distribution, values = named[0], spec[named[0]]
    if distribution == "choice":
        if not isinstance(values, list) or not values:
            raise _error(source, key, "choice needs a non-empty list")
    else:
        if not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, (int, float)) for v in values)):
            raise _error(source, key, f"{distribution} needs [low, high] numbers, got {values!r}")
        low, high = values
        if not low < high:
            raise _error(source, key, f"{distribution} range needs low < high, got [{low}, {high}]")
        if distribution == "loguniform" and low <= 0:
            raise _error(source, key, f"loguniform needs low > 0, got {low}")
        if distribution == "int" and not all(isinstance(v, int) for v in values):
            raise _error(source, key, f"int range needs integers, got {values!r}")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0
                             or (distribution == "int" and not isinstance(step, int))):
        raise _error(source, key, f"step must be a positive {'integer' if distribution == 'int' else 'number'}, "
                                  f"got {step!r}")
    if step is not None and distribution in ("choice", "loguniform"):
        raise _error(source, key, f"step applies to uniform and int ranges, not to {distribution}")
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise _error(source, key, "when must map earlier parameter names to values")
    by_key = {p.key: p for p in earlier}
    for name, wanted in when.items():
        if name not in by_key:
            raise _error(source, key, f"'when' refers to '{name}', which is not an earlier parameter")
        other = by_key[name]
        for value in wanted if isinstance(wanted, list) else [wanted]:
            possible = (value in other.values if other.distribution == "choice"
                        else isinstance(value, (int, float)) and other.values[0] <= value <= other.values[1])
            if not possible:
                raise _error(source, key, f"'when' asks for {name}={value!r}, which '{name}' never takes "
                                          f"({other.distribution} {other.values}): this parameter would never be "
                                          f"searched")
    return Param(key, distribution, values, spec.get("step"), when)


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    try:
        data = safe_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    except FileNotFoundError as error:
        raise ConfigError(f"search space not found: {path}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - {"model_name", "metric", "fixed", "params"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    metric = data.get("metric", "accuracy")
    if metric not in METRICS:
        raise ConfigError(f"{path}: metric must be one of {METRICS}, got {metric!r}")
    for section in ("params", "fixed"):
        if not isinstance(data.get(section) or {}, dict):
            raise ConfigError(f"{path}: `{section}:` must be a mapping of dotted setting names "
                              f"(e.g. `model.bank_mode: {{choice: [mixed, gated]}}`), got a "
                              f"{type(data[section]).__name__}")
    params: list[Param] = []
    for key, spec in (data.get("params") or {}).items():
        params.append(parse_param(key, spec, str(path), params))
    space = SearchSpace(current_name(data.get("model_name", DEFAULT_MODEL)), metric, data.get("fixed") or {}, params, str(path))
    check_space(space)
    return space


def check_space(space: SearchSpace) -> None:
    """The fixed settings must be valid, every parameter must name a real setting, and every choice (both ends of a
    range) must be a valid value of it: a config is checked with each, so a bad later choice is refused here, not
    found by a failed trial."""
    try:
        base = validate(space.base_config())
    except ConfigError as error:
        raise ConfigError(f"{space.source}: fixed: {error}") from error
    for param in space.params:
        values = list(param.values)
        if param.distribution in ("uniform", "loguniform") and not param.step:
            values.append(float(param.values[0] + param.values[1]) / 2 + 0.01)  # what a float range samples
        for value in values:
            try:
                validate(merge(base, nest({param.key: value})))
            except ConfigError as error:
                hint = (" (an integer setting: search it with int: [low, high])"
                        if isinstance(value, float) and value not in param.values else "")
                raise ConfigError(f"{space.source}: parameter '{param.key}' value {value!r}: {error}{hint}") from error


def _encode(value):
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _active(param: Param, sampled: dict, model_name: str) -> bool:
    """Whether a trial samples `param`, given what it sampled before: its `when` holds and the kind reads it."""
    if not kind_of(model_name).reads(param.key, sampled):
        return False
    for name, wanted in param.when.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if name not in sampled or sampled[name] not in allowed:
            return False
    return True


def suggest(trial, space: SearchSpace) -> dict:
    """Optuna define-by-run: sample the active parameters; returns {dotted key: value} (lists JSON-encoded)."""
    sampled: dict = {}
    for param in space.params:
        if not _active(param, {k: decode(v) for k, v in sampled.items()}, space.model_name):
            continue
        low_high = param.values
        if param.distribution == "choice":
            sampled[param.key] = trial.suggest_categorical(param.key, [_encode(v) for v in param.values])
        elif param.distribution == "int":
            sampled[param.key] = trial.suggest_int(param.key, *low_high, step=int(param.step or 1))
        else:
            sampled[param.key] = trial.suggest_float(param.key, *low_high, log=param.distribution == "loguniform",
                                                     step=param.step)
    return None  # Ray's OptunaSearch takes the sampled trial.params as the config


def decode(value):
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


class DefineByRun:
    """Picklable define-by-run function (Ray saves the searcher for resuming)."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, trial):
        return suggest(trial, self.space)


# TPE as set here on every Optuna version (Optuna 5 turned multivariate and constant_liar on by default, 4 had them
# off): the same seed samples the same trials under either, and a resumed search keeps its sampler
TPE_SETTINGS = {"multivariate": True, "constant_liar": True, "n_startup_trials": 10}

RECORDED_METRICS = ("objective", "objective_se", "tune_accuracy", "tune_accuracy_cv", "tune_auroc", "gate_accuracy",
                    "reused_from")


def optuna_search(space: SearchSpace, seed: int, metric: str = "objective", points: list[dict] | None = None,
                  storage_url: str | None = None, study_name: str | None = None):
    """Seeded TPE over the space; `points` (trial configs, e.g. the defaults) are evaluated first. With
    `storage_url` the study lives in that database (SQLite in the experiment folder by default: optuna-dashboard and
    optuna.load_study open it), each Optuna trial carrying the Ray trial id and the tune metrics."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class RecordingOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id, result=None, error=False):
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None and trial_id not in self._completed_trials:
                try:
                    ot_trial.set_user_attr("ray_trial_id", trial_id)
                    ot_trial.set_user_attr("status", "failed" if error else "finished")
                    for key in RECORDED_METRICS:
                        if result and result.get(key) is not None:
                            ot_trial.set_user_attr(key, result[key])
                except Exception as problem:  # noqa: BLE001 - a record, never the search's end
                    print(f"[hdmap] could not record trial {trial_id} in the Optuna study: {problem}")
            return super().on_trial_complete(trial_id, result, error)

    storage = optuna.storages.RDBStorage(storage_url) if storage_url else None
    return RecordingOptunaSearch(space=DefineByRun(space), metric=metric, mode="max",
                                 points_to_evaluate=points or None, sampler=optuna.samplers.TPESampler(seed=seed, **TPE_SETTINGS),
                                 storage=storage, study_name=study_name)



def trial_overrides(trial_config: dict) -> dict:
    """A trial's flat {dotted key: value} -> a nested override dict for the run config (values as sampled)."""
    return nest({key: decode(value) for key, value in trial_config.items()})
