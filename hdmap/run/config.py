"""One run's settings as nested dicts (YAML, `--set key=value`, Tune configs all fill the same structure)."""
from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import yaml

from hdmap.features.backbones import BACKBONES, OFFLINE_BACKBONE, REAL_DATA_BACKBONE, BackboneSpec
from hdmap.gating.gates import GateConfig
from hdmap.models.patchcore import PatchCoreConfig

# The one registry of model kinds (name -> family: how it is fitted, scored and searched; see run/pipeline.py).
FAMILIES = {"patchcore": "patchcore", "gated_patchcore": "patchcore", "feclip": "feclip"}
MODELS = tuple(FAMILIES)
DEFAULT_MODEL = "gated_patchcore"
SPLIT_DEFAULT = {"tune_fraction": 0.3, "seed": 0}


def backbone_settings(name: str) -> dict:
    """The config keys a backbone choice sets: backbone.{name, weights, taps}, image_size, resize, normalisation."""
    if name not in BACKBONES:
        raise ConfigError(f"no presets for backbone {name!r} (presets: {sorted(BACKBONES)}); for another timm / "
                          f"open_clip model set backbone.name, backbone.taps and image_size with --set")
    preset = BACKBONES[name]
    return {"backbone": {"name": name, "weights": preset.weights, "taps": list(preset.taps), "model_kwargs": {}},
            "image_size": preset.image_size, "resize": preset.resize, "normalisation": "backbone"}


def patchcore_default(backbone: str) -> dict:
    """Defaults of the PatchCore family: the backbone's presets and PatchCoreConfig's own defaults."""
    return {"model_name": DEFAULT_MODEL, **backbone_settings(backbone), "model": PatchCoreConfig().to_dict(),
            "split": dict(SPLIT_DEFAULT)}


# The maps as they are, no band channel.
RAW_INPUTS = {"input_norm": "none", "band_weight": 0.0}
# Plain PatchCore (the baseline) and the studies of H1-H3: raw maps and PatchCore's own image score (the largest
# patch distance); steps 1-3 ask their question on these, step 6 varies the inputs, the shots curve the score.
BASELINE_MODEL = {**RAW_INPUTS, "image_score": "max"}

FECLIP_DEFAULT = {
    "model_name": "feclip",
    "image_size": 336, "resize": "bilinear", "normalisation": "clip",
    "feclip": {"clip_model": "ViT-L-14-336", "clip_weights": "openai", "taps": [6, 12, 18, 24], "ffe_window": 3,
               "lfs_window": 3, "lfs_kernel": 1, "lfs_stat": "mean", "band": "all", "mix": 0.1,
               "image_score": "cls", "temperature": 0.07, "clip_kwargs": {}},
    # source: `checkpoint` (adapters trained elsewhere, e.g. by experiments/feclip_benchmark.py), `hdmap_bands`
    # (variant 1: train on band anomalies synthesised on this domain's train normals), `none` (untrained)
    "train": {"source": "hdmap_bands", "checkpoint": None, "epochs": 9, "batch_size": 16, "lr": 5e-4,
              "linear_lr": 5e-4, "fault_fraction": 0.5, "seed": 0},
    # variant 2: a few-shot patch memory of the gated condition's train references, added to the zero-shot map
    "fewshot": {"shots": 0, "weight": 1.0, "gate": {"kind": "intensity"}, "calibration_maps": 8},
    "split": dict(SPLIT_DEFAULT),
}


class ConfigError(ValueError):
    """A config key or value that is not understood; the message names it."""


def default_config(real_data: bool = False, model_name: str | None = None, backbone: str | None = None) -> dict:
    """Defaults of a run: FE-CLIP's, or PatchCore's with `backbone`'s presets (default: the offline
    EfficientNet-Lite0 on the embedded data, DINOv2 ViT-S/14 by name on real data). Plain `patchcore` (the
    baseline) takes the raw maps (no input normalisation, no band descriptor) and PatchCore's max image score."""
    if model_name == "feclip":
        return copy.deepcopy(FECLIP_DEFAULT)
    config = patchcore_default(backbone or (REAL_DATA_BACKBONE if real_data else OFFLINE_BACKBONE))
    if model_name:
        config["model_name"] = model_name
    if model_name == "patchcore":
        config["model"].update(BASELINE_MODEL)
    return config


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Deep merge; keys absent from `base` are an error naming the key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        free = path.startswith(("model.", "backbone.model_kwargs.", "feclip.", "fewshot.gate."))  # validate() checks
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
    if config["model_name"] == "feclip":
        from hdmap.models.feclip.model import FEClipConfig

        _check_keys("feclip", config["feclip"], FEClipConfig)
        _check_keys("fewshot.gate", config["fewshot"]["gate"], GateConfig)
        from hdmap.models.feclip.adapters import LFS_STATS

        if config["feclip"].get("lfs_stat", "mean") not in LFS_STATS:
            raise ConfigError(f"feclip.lfs_stat must be one of {LFS_STATS}, got {config['feclip']['lfs_stat']!r}")
        from hdmap.models.feclip.model import IMAGE_SCORES

        if config["feclip"].get("image_score", "cls") not in IMAGE_SCORES:
            raise ConfigError(f"feclip.image_score must be one of {IMAGE_SCORES}, got {config['feclip']['image_score']!r}")
        if config["train"]["source"] not in ("checkpoint", "hdmap_bands", "none"):
            raise ConfigError(f"train.source must be checkpoint, hdmap_bands or none, got {config['train']['source']!r}")
        if config["train"]["source"] == "checkpoint" and not config["train"]["checkpoint"]:
            raise ConfigError("train.source=checkpoint needs train.checkpoint=/path/to/feclip.ckpt")
        return config
    _check_keys("backbone", config["backbone"], BackboneSpec)
    model = dict(config["model"])
    _check_keys("model.gate", model.get("gate", {}), GateConfig)
    _check_keys("model", model, PatchCoreConfig)
    try:
        PatchCoreConfig(**model)
        BackboneSpec.from_config(config["backbone"])
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from error
    return config


def _check_keys(where: str, values: dict, cls) -> None:
    known = {f.name: f.type for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key '{where}.{key}' (known: {sorted(known)})")
        _check_type(f"{where}.{key}", value, str(known[key]))


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
