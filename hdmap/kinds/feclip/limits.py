"""What the train maps allow few-shot FE-CLIP's references per condition (`fewshot.shots`) in a search."""
from __future__ import annotations

import numpy as np

from hdmap.gating.gates import GateSettings
from hdmap.run.data_limits import Limit, smallest_condition


def shots_limit(space, base: dict, train_maps: np.ndarray, truth: list[str]) -> Limit:
    fewest, which = smallest_condition(train_maps, truth, [GateSettings(**base["fewshot"]["gate"])])
    return Limit("fewshot.shots", fewest - 1, f"{which}, less 1 held out per condition for the distance scale")
