"""What the train maps allow few-shot FE-CLIP's references per condition (`fewshot.shots`) in a search."""
from __future__ import annotations

import numpy as np

from hdmap.gating.gates import GateSettings
from hdmap.kinds.feclip.model import tower_shape
from hdmap.run.data_limits import Limit, searched_values, smallest_condition


def shots_limit(space, base: dict, train_maps: np.ndarray, truth: list[str]) -> Limit:
    fewest, which = smallest_condition(train_maps, truth, [GateSettings(**base["fewshot"]["gate"])])
    return Limit("fewshot.shots", fewest - 1, f"{which}, less 1 held out per condition for the distance scale")


# Activations kept for the backward pass, per image and per transformer block, over tokens x width x 4 bytes: 79.6 MB
# measured for CLIP ViT-L/14@336 in fp32 (577 tokens x 1024 wide) = 33.7 x; bf16 autocast keeps about half.
ACTIVATION_FACTOR = 33.7


def activation_memory(space, base: dict, n_train: int, map_bytes=None) -> tuple[int, str]:
    """FE-CLIP's largest training memory in the space: the activations of the blocks from the first tap to the last
    (the adapters' gradients flow back to the first), for a batch, in fp32 or about half under bf16 autocast."""
    largest, why = 0, ""
    tower = tower_shape(base["feclip"])
    tokens = (tower["image_size"] // tower["patch_size"]) ** 2 + 1
    for batch in searched_values(space, "train.batch_size", base["train"]["batch_size"]):
        for taps in searched_values(space, "feclip.taps", base["feclip"]["taps"]):
            for precision in searched_values(space, "train.precision", base["train"].get("precision", "auto")):
                half = precision in ("bf16-mixed", "auto")  # auto is bf16 on the GPUs this check runs for
                blocks = max(taps) - min(taps) + 1
                need = int(ACTIVATION_FACTOR * tokens * tower["width"] * 4 * blocks * int(batch) * (0.5 if half
                                                                                                    else 1.0))
                if need > largest:
                    largest = need
                    why = (f"FE-CLIP's training activations: train.batch_size {batch}, {blocks} blocks from "
                           f"feclip.taps {list(taps)}, train.precision {precision}, an estimate")
    return largest, why
