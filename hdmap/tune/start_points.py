"""Warm start: the model's defaults (then the kind's own `extra_starts`, and any configs given with `--start FILE.yaml`) as the first trials of a
search, so the defaults are always a candidate and a search can never return something it did not compare with
them. A start config is a full run config projected onto the space's parameters."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import yaml

from hdmap.config import ConfigError, merge, nest, safe_yaml
from hdmap.kinds.registry import kind_of, validate
from hdmap.tune.spaces import Param, SearchSpace, _active, _encode, decode

DEFAULTS_LABEL = "defaults"


def value_at(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"the config has no setting '{key}'")
        node = node[part]
    return node


def _contains(param: Param, value) -> bool:
    if param.distribution == "choice":
        return _encode(value) in [_encode(v) for v in param.values]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    low, high = param.values
    return low <= value <= high and (param.distribution != "int" or float(value).is_integer())


def include_value(param: Param, value, label: str) -> None:
    """Make `value` a value of `param` (a choice gets it added, a range is widened), with a printed note."""
    if _contains(param, value):
        return
    if param.distribution == "choice":
        param.values = list(param.values) + [value]
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and (param.distribution != "int" or
                                                                              float(value).is_integer()):
        low, high = param.values
        param.values = [min(low, value), max(high, value)]
        if param.distribution == "loguniform" and param.values[0] <= 0:
            raise ConfigError(f"parameter '{param.key}': the {label} value {value} cannot lie in a loguniform range")
    else:
        raise ConfigError(f"parameter '{param.key}': the {label} value {value!r} cannot be a {param.distribution} "
                          f"value")
    print(f"[hdmap] search space: '{param.key}' now includes the {label} value {value!r} ({param.distribution} "
          f"{param.values}) so the {label} are a candidate", file=sys.stderr)


def project(space: SearchSpace, config: dict, label: str) -> dict:
    """The trial point {dotted key: encoded value} that reproduces `config` on the space's active parameters."""
    point, sampled = {}, {}
    for param in space.params:
        if not _active(param, sampled, space.model_name):
            continue
        value = value_at(config, param.key)
        if isinstance(value, tuple):
            value = list(value)
        include_value(param, value, label)
        sampled[param.key] = value
        point[param.key] = _encode(value)
    return point


def _leaves(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_start_file(path: str | Path) -> list[dict]:
    """Start configs of a YAML file: one mapping of settings (nested or dotted keys) or a list of them."""
    try:
        data = safe_yaml(Path(path).read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"--start: file not found: {path}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"--start {path}: not valid YAML ({error})") from error
    configs = data if isinstance(data, list) else [data]
    if not all(isinstance(c, dict) for c in configs):
        raise ConfigError(f"--start {path}: expected a mapping of settings or a list of mappings")
    return [nest({str(key): value for key, value in config.items()}) for config in configs]


def start_points(space: SearchSpace, base_config: dict, start_files: list[str] = ()) -> list[dict]:
    """[{'label', 'point'}]: the defaults (`base_config` itself) first, then every config of `start_files`
    merged onto the defaults. A start config may set only what the space searches (else a trial could not
    reproduce it): any other difference from the defaults is an error naming the key."""
    starts = [{"label": DEFAULTS_LABEL, "point": project(space, base_config, DEFAULTS_LABEL)}]
    extra = kind_of(space.model_name).extra_starts
    starts += [{"label": label, "point": project(space, config, label)}
               for label, config in (extra(space, base_config) if extra else [])]
    searched = {p.key for p in space.params}
    for path in start_files:
        for number, settings in enumerate(read_start_file(path), 1):
            label = f"{Path(path).name}#{number}"
            try:
                config = validate(merge(base_config, settings))
            except ConfigError as error:
                raise ConfigError(f"--start {label}: {error}") from error
            base_leaves, leaves = _leaves(base_config), _leaves(config)
            for key, value in leaves.items():
                if key not in searched and json.dumps(base_leaves.get(key)) != json.dumps(value):
                    raise ConfigError(f"--start {label}: '{key}' is not a parameter of the search space "
                                      f"{space.source}: a trial cannot set it (set it in the space's fixed part)")
            starts.append({"label": label, "point": project(space, config, label)})
    return starts


def label_of(config: dict, starts: list[dict]) -> str | None:
    """The label of the start point a trial config came from (None for a sampled trial)."""
    decoded = {k: decode(v) for k, v in config.items()}
    for start in starts:
        point = {k: decode(v) for k, v in start["point"].items()}
        if point.keys() == decoded.keys() and all(_same(point[k], decoded[k]) for k in point):
            return start["label"]
    return None


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return json.dumps(a) == json.dumps(b)
