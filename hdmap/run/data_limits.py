"""What a domain's train maps allow a data-dependent setting: the pieces kinds use to state the limits of their
search spaces (each kind's `space_limits`; hdmap/tune/data_fit.py applies them before Ray starts)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdmap.condition_names import CONDITIONS
from hdmap.gating.gates import GateSettings, build_gate

HELD_OUT = 2  # train maps per condition soft banks (calibration) and fusion (standardisation) hold out at least


@dataclass
class Limit:
    key: str
    most: int  # the largest value the data holds
    why: str
    null_holds: bool = True  # whether null (every train map) fits this data


def searched_values(space, key: str, base) -> list:
    """The values `key` can take in a trial: its choices or range ends where searched, else the base value."""
    param = next((p for p in space.params if p.key == key), None)
    return list(param.values) if param is not None else [base]


def smallest_condition(train_maps: np.ndarray, truth: list[str], gates: list[GateSettings]) -> tuple[int, str]:
    """(fewest train maps any of `gates` assigns to one condition, which gate that was). Gates that read backbone
    features start from the intensity split, which stands for them here."""
    fewest, which = len(train_maps), ""
    maps = torch.from_numpy(np.asarray(train_maps, dtype=np.float32))
    for config in gates:
        kind = "intensity" if config.uses_features else config.kind
        stand_in = GateSettings(kind=kind, percentile=config.percentile, threshold=config.threshold)
        assignment = build_gate(stand_in).assign_train(maps, None, truth)
        counts = {name: int((assignment == code).sum()) for code, name in enumerate(CONDITIONS)}
        if min(counts.values()) < fewest:
            fewest = min(counts.values())
            which = f"gate {config.kind} (percentile {config.percentile:g}) assigns {counts}"
    return fewest, which
