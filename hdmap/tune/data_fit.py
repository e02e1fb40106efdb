"""A search space fitted to the data it searches: before Ray starts, the choices of a data-dependent setting that
the data cannot hold are dropped (an integer range is clipped), with a note the summary keeps; a setting left with
no valid choice is an error naming it and the limit. Today's data-dependent settings: the references per condition
of PatchCore (`model.shots`) and of few-shot FE-CLIP (`fewshot.shots`), bounded by how many train maps the gate
assigns to the smaller condition."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from hdmap.condition_names import CONDITIONS
from hdmap.config import ConfigError
from hdmap.gating.gates import Gate, GateConfig
from hdmap.tune.spaces import Param, SearchSpace

HELD_OUT = 2  # train maps per condition soft banks (calibration) and fusion (standardisation) hold out at least


@dataclass
class Limit:
    key: str
    most: int  # the largest value the data holds
    why: str


def _values(space: SearchSpace, key: str, base) -> list:
    """The values `key` can take in a trial: its choices or range ends where searched, else the base value."""
    param = next((p for p in space.params if p.key == key), None)
    return list(param.values) if param is not None else [base]


def smallest_condition(train_maps: np.ndarray, truth: list[str], gates: list[GateConfig]) -> tuple[int, str]:
    """(fewest train maps any of `gates` assigns to one condition, which gate that was). Gates that read backbone
    features start from the intensity split, which stands for them here."""
    fewest, which = len(train_maps), ""
    maps = torch.from_numpy(np.asarray(train_maps, dtype=np.float32))
    for config in gates:
        kind = "intensity" if config.uses_features else config.kind
        assignment = Gate(GateConfig(kind=kind, percentile=config.percentile)).assign_train(maps, None, truth)
        counts = {name: int((assignment == code).sum()) for code, name in enumerate(CONDITIONS)}
        if min(counts.values()) < fewest:
            fewest = min(counts.values())
            which = f"gate {config.kind} (percentile {config.percentile:g}) assigns {counts}"
    return fewest, which


def patchcore_shots_limit(space: SearchSpace, base: dict, train_maps: np.ndarray, truth: list[str]) -> Limit:
    model = base["model"]
    uniform = base["model_name"] == "patchcore"  # its references are drawn without conditions
    held_out = ("soft" in _values(space, "model.bank_mode", model["bank_mode"])
                or bool({"sum", "max", "auto"} & set(_values(space, "model.fusion", model["fusion"]))))
    margin = HELD_OUT if held_out else 0
    reason = f", less {HELD_OUT} held out per condition by soft banks or fusion" if held_out else ""
    if uniform:
        return Limit("model.shots", (len(train_maps) - 2 * margin) // 2,
                     f"{len(train_maps)} train maps hold 2 x shots uniformly drawn references"
                     + (f", less {2 * HELD_OUT} held out by soft banks or fusion" if held_out else ""))
    percentiles = [float(p) for p in _values(space, "model.gate.percentile", model["gate"]["percentile"])]
    gates = [GateConfig(kind=kind, percentile=p) for kind in _values(space, "model.gate.kind", model["gate"]["kind"])
             for p in percentiles]
    fewest, which = smallest_condition(train_maps, truth, gates)
    return Limit("model.shots", fewest - margin, f"{which}{reason}")


def feclip_shots_limit(space: SearchSpace, base: dict, train_maps: np.ndarray, truth: list[str]) -> Limit:
    gate = base["fewshot"]["gate"]
    fewest, which = smallest_condition(train_maps, truth, [GateConfig(**gate)])
    return Limit("fewshot.shots", fewest - 1, f"{which}, less 1 held out per condition for the distance scale")


LIMITS = {"gated_patchcore": [patchcore_shots_limit], "patchcore": [patchcore_shots_limit],
          "feclip": [feclip_shots_limit]}


def clip_param(param: Param, most: int) -> list:
    """The values of `param` dropped to respect `most` (None, all of train, always holds); edits `param`."""
    if param.distribution == "choice":
        dropped = [v for v in param.values if isinstance(v, int) and not isinstance(v, bool) and v > most]
        param.values = [v for v in param.values if v not in dropped]
        return dropped
    low, high = param.values
    if high <= most:
        return []
    if low > most:
        param.values = []
        return [f"[{low}, {high}]"]
    param.values = [low, int(most) if param.distribution == "int" else most]
    return [f"({most}, {high}]"]


def unreachable_after(space: SearchSpace, parent: Param, dropped: list) -> list[str]:
    """Parameters searched only `when:` the parent takes a value just dropped: they are never searched now."""
    notes = []
    for param in space.params:
        wanted = param.when.get(parent.key)
        if wanted is None or parent.distribution != "choice":
            continue
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if not any(value in parent.values for value in wanted):
            notes.append(f"search space fitted to the data: '{param.key}' is searched only when {parent.key} is "
                         f"{wanted}, all dropped: it is not searched")
    return notes


def fit_space_to_data(space: SearchSpace, base_config: dict, data) -> list[str]:
    """Drop what `data` cannot hold from `space` (in place); returns the notes (also printed and added to
    `space.notes`). A searched setting left with no value is a ConfigError naming it and its limit."""
    notes = []
    for limit_of in LIMITS.get(space.model_name, []):
        limit = limit_of(space, base_config, data.train_maps, data.train_truth)
        param = next((p for p in space.params if p.key == limit.key), None)
        if param is None:
            continue
        dropped = clip_param(param, limit.most)
        if not param.values:
            raise ConfigError(f"{space.source}: parameter '{limit.key}': no choice this data can hold: at most "
                              f"{limit.most} ({limit.why})")
        if dropped:
            notes.append(f"search space fitted to the data: '{limit.key}' dropped {dropped}: at most {limit.most} "
                         f"({limit.why})")
            notes += unreachable_after(space, param, dropped)
    for note in notes:
        print(f"[hdmap] {note}", file=sys.stderr)
    space.notes.extend(notes)
    return notes
