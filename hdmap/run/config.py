"""One run's settings as nested dicts (YAML, `--set key=value`, Tune configs all fill the same structure)."""
from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import yaml

from hdmap.features.backbones import BackboneSpec
from hdmap.gating.gates import GateConfig
from hdmap.models.patchcore import PatchCoreConfig

MODELS = ("patchcore", "gated_patchcore")

OFFLINE_DEFAULT = {
    "model_name": "gated_patchcore",
    "backbone": {"name": "tf_efficientnet_lite0", "weights": "default", "taps": [2, 3], "model_kwargs": {}},
    "image_size": 384, "resize": "aspect", "normalisation": "backbone",
    "model": {"bank_mode": "gated", "shots": 16, "context_ks": [0, 2], "gate": {"kind": "intensity"}},
    "split": {"tune_fraction": 0.3, "seed": 0},
}
REAL_DATA_BACKBONE = {"name": "dinov2_vits14", "weights": "hub", "taps": [8, 11], "model_kwargs": {}}
REAL_DATA_IMAGE_SIZE = 448


class ConfigError(ValueError):
    """A config key or value that is not understood; the message names it."""


def default_config(real_data: bool = False) -> dict:
    config = copy.deepcopy(OFFLINE_DEFAULT)
    if real_data:
        config["backbone"] = dict(REAL_DATA_BACKBONE)
        config["image_size"] = REAL_DATA_IMAGE_SIZE
    return config


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Deep merge; keys absent from `base` are an error naming the key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        free = path.startswith("model.") or path.startswith("backbone.model_kwargs.")  # checked by validate()
        if key not in out and not free:
            raise ConfigError(f"unknown config key '{where}'")
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


def validate(config: dict) -> dict:
    """Build every dataclass once so bad keys/values fail early with their name; returns the config."""
    if config.get("model_name") not in MODELS:
        raise ConfigError(f"model_name must be one of {MODELS}, got {config.get('model_name')!r}")
    _check_keys("backbone", config["backbone"], BackboneSpec)
    model = dict(config["model"])
    _check_keys("model.gate", model.get("gate", {}), GateConfig)
    _check_keys("model", model, PatchCoreConfig)
    try:
        PatchCoreConfig(**model)
        BackboneSpec(**{**config["backbone"], "taps": tuple(config["backbone"]["taps"])})
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from error
    return config


def _check_keys(where: str, values: dict, cls) -> None:
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown config key '{where}.{key}' (known: {sorted(known)})")
