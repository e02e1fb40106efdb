"""One run's settings as nested dicts (YAML, `--set key=value`, Tune configs all fill the same structure):
merging, parsing and loading. What each setting accepts is declared on its dataclass field (hdmap/setting_rules.py);
what the settings of each model kind are, and their defaults, is the kind's business (hdmap/kinds/)."""
from __future__ import annotations

import copy
from dataclasses import asdict, is_dataclass
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


def nest(flat: dict) -> dict:
    """{'model.gate.kind': 'feature', 'image_size': 448} -> the nested mapping those dotted keys name."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.strip().split(".")
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                scalar = ".".join(parents[:depth + 1])
                raise ConfigError(f"config key '{key}': '{scalar}' is a single value ({node!r}), it holds no keys")
        if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' is set to {value!r} while keys below it are set too")
        node[leaf] = value
    return out


def parse_set(assignments: list[str]) -> dict:
    """['model.gate.kind=feature', 'image_size=448'] -> nested dict; values parsed as YAML."""
    flat = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        key, raw = assignment.split("=", 1)
        try:
            flat[key] = safe_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {key}: its value is not valid YAML ({str(error).splitlines()[0]})") from None
    return nest(flat)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


MAX_YAML_VALUES = 100_000  # a settings file or search space never holds more; aliases can expand past any memory


def safe_yaml(text: str):
    """yaml.safe_load, but a repeated key in a mapping is an error (with its line), and a document whose aliases
    expand to more than MAX_YAML_VALUES values (a "billion laughs" bomb) is refused before anything walks it."""
    data = yaml.load(text, Loader=_UniqueKeyLoader)
    expanded_size(data, MAX_YAML_VALUES)
    return data


def expanded_size(data, budget: int) -> int:
    """How many values `data` holds once its shared references are expanded; a YAMLError past `budget`."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > budget:
            raise yaml.YAMLError(f"the document expands to more than {budget} values (aliases repeated inside "
                                 f"each other?)")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return count


def load_yaml(path: str | Path) -> dict:
    try:
        data = safe_yaml(Path(path).read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data
