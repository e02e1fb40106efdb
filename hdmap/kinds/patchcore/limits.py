"""What the train maps allow PatchCore's references per condition (`model.shots`) in a search."""
from __future__ import annotations

import numpy as np

from hdmap.gating.gates import GateSettings
from hdmap.run.data_limits import HELD_OUT, Limit, searched_values, smallest_condition


def shots_limit(space, base: dict, train_maps: np.ndarray, truth: list[str]) -> Limit:
    model = base["model"]
    held_out = ("soft" in searched_values(space, "model.bank_mode", model["bank_mode"])
                or bool({"sum", "max", "auto"} & set(searched_values(space, "model.fusion", model["fusion"]))))
    margin = HELD_OUT if held_out else 0
    reason = f", less {HELD_OUT} held out per condition by soft banks or fusion" if held_out else ""
    if model["reference_sampling"] == "uniform":  # references drawn without conditions
        return Limit("model.shots", (len(train_maps) - 2 * margin) // 2,
                     f"{len(train_maps)} train maps hold 2 x shots uniformly drawn references"
                     + (f", less {2 * HELD_OUT} held out by soft banks or fusion" if held_out else ""))
    percentiles = [float(p) for p in searched_values(space, "model.gate.percentile", model["gate"]["percentile"])]
    gates = [GateSettings(kind=kind, percentile=p)
             for kind in searched_values(space, "model.gate.kind", model["gate"]["kind"]) for p in percentiles]
    fewest, which = smallest_condition(train_maps, truth, gates)
    return Limit("model.shots", fewest - margin, f"{which}{reason}")
