"""One run's settings as nested dicts (YAML, `--set key=value`, Tune configs all fill the same structure):
merging, parsing, loading and the type check of a value against its dataclass field. What the settings of each
model kind are, and their defaults, is the kind's business (hdmap/kinds/)."""
from __future__ import annotations

import copy
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import yaml

SPLIT_DEFAULT = {"tune_fraction": 0.3, "seed": 0}  # the tune/holdout split of every kind


class ConfigError(ValueError):
    """A config key or value that is not understood; the message names it."""


def plain(settings) -> dict:
    """A dataclass of settings as a config mapping of plain YAML/JSON values (tuples as lists)."""
    values = asdict(settings) if is_dataclass(settings) else settings

    def unpack(value):
        if isinstance(value, dict):
            return {k: unpack(v) for k, v in value.items()}
        return [unpack(v) for v in value] if isinstance(value, (list, tuple)) else value
    return unpack(values)


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Deep merge; a key absent from `base` is an error naming it, except inside an empty mapping of `base` (an open
    set of keyword arguments such as backbone.model_kwargs)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in out and not (path and not base):
            raise ConfigError(f"unknown config key '{where}' (known here: {sorted(out)})")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, where + ".")
        else:
            out[key] = value
    return out


def parse_set(assignments: list[str]) -> dict:
    """['model.gate.kind=feature', 'image_size=448'] -> nested dict; values parsed as YAML."""
    out: dict = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        key, raw = assignment.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def load_yaml(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def check_fields(where: str, values: dict, cls) -> None:
    """Every key of `values` is a field of the dataclass `cls`, with a value of its declared type."""
    known = {f.name: f.type for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key '{where}.{key}' (known: {sorted(known)})")
        _check_type(f"{where}.{key}", value, str(known[key]))


def build(where: str, make, values: dict):
    """`make(**values)` (a settings dataclass, or a `from_config`); a value its checks refuse is a ConfigError
    naming `where`."""
    try:
        return make(**values) if isinstance(make, type) else make(values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def _check_type(key: str, value, declared: str) -> None:
    """A value of a dataclass field against its declared type (`int | None`, `tuple[int, ...]`, ...): a value of
    another type is an error naming the key and the value, before any code compares it."""
    kinds = [part.strip() for part in declared.split("|")]
    if value is None:
        if "None" in kinds:
            return
    elif any(k.startswith("tuple[int") for k in kinds):
        items = value if isinstance(value, (list, tuple)) else [value]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return
    else:
        for kind in (k for k in kinds if k != "None"):
            allowed = _SCALARS.get(kind)
            if allowed is None:  # a nested config or a type this check does not know: its own class checks it
                return
            if isinstance(value, allowed) and (kind == "bool" or not isinstance(value, bool)):
                return
    raise ConfigError(f"config key '{key}' expects {declared}, got {value!r}")
