"""What the train maps allow PatchCore's references per condition (`model.shots`) in a search, as `plan_fit` (model.py)
takes them: k per gate-assigned condition (or 2k drawn uniformly); soft banks hold out 2 maps of each condition for
their calibration; fusion standardises on held-out maps drawn from every non-reference map (at least
MIN_FUSION_MAPS), and with `shots` null (every train map) from a quarter of train."""
from __future__ import annotations

import numpy as np

from hdmap.data.domain import sample_indices
from hdmap.gating.gates import GateSettings
from hdmap.kinds.patchcore.model import MIN_FUSION_MAPS
from hdmap.run.data_limits import HELD_OUT, Limit, searched_values, smallest_condition


def shots_limit(space, base: dict, train_maps: np.ndarray, truth: list[str]) -> Limit:
    model = base["model"]
    fewest_maps = min((v for v in searched_values(space, "model.train_maps", model.get("train_maps")) if v),
                      default=None)  # the smallest sample a trial fits on, drawn as the fit draws it
    picked = sample_indices(len(train_maps), fewest_maps, model["seed"])
    train_maps = np.asarray(train_maps)[picked]
    truth = None if truth is None else [truth[i] for i in picked]
    n = len(train_maps)
    soft = "soft" in searched_values(space, "model.bank_mode", model["bank_mode"])
    fused = bool({"sum", "max", "auto"} & set(searched_values(space, "model.fusion", model["fusion"])))
    if model["reference_sampling"] == "uniform":  # references drawn without conditions
        most, why = n // 2, f"{n} train maps hold 2 x shots uniformly drawn references"
    else:
        gate = model["gate"]
        gates = [GateSettings(kind=kind, percentile=float(p), threshold=gate.get("threshold"))
                 for kind in searched_values(space, "model.gate.kind", gate["kind"])
                 for p in searched_values(space, "model.gate.percentile", gate["percentile"])]
        most, why = smallest_condition(train_maps, truth, gates)
        if soft:
            most, why = most - HELD_OUT, f"{why}, less {HELD_OUT} held out per condition by soft banks"
    if fused and not soft and (n - MIN_FUSION_MAPS) // 2 < most:
        most = (n - MIN_FUSION_MAPS) // 2
        why = f"{why}; fusion holds out {MIN_FUSION_MAPS} of the {n} train maps outside the 2 x shots references"
    null_holds = not fused or soft or n // 4 >= MIN_FUSION_MAPS
    if not null_holds:
        why += f"; null (every train map) under fusion needs {4 * MIN_FUSION_MAPS} train maps, this data has {n}"
    return Limit("model.shots", most, why, null_holds)


def precoreset_memory(space, base: dict, n_train: int, map_bytes) -> tuple[int, str]:
    """PatchCore's largest pre-coreset buffer in the space: every reference's patch embeddings in float32 at once
    (fit_embeddings.py), i.e. references x (the taps' features of a map, times the context offsets, plus the band
    channel). `map_bytes(image_size, resize)`: float16 bytes of one map's features, every tap."""
    largest, why = 0, ""
    for image_size in searched_values(space, "image_size", base["image_size"]):
        for resize in searched_values(space, "resize", base["resize"]):
            per_map = map_bytes(image_size, resize) // 2 * 4  # float16 features -> float32 embeddings
            samples = [v for v in searched_values(space, "model.train_maps", base["model"].get("train_maps")) if v]
            fitted = min(n_train, max(samples)) if samples else n_train
            for context in searched_values(space, "model.context_ks", base["model"]["context_ks"]):
                for shots in searched_values(space, "model.shots", base["model"]["shots"]):
                    references = fitted if shots is None else min(fitted, 2 * int(shots))
                    need = references * per_map * len(context)
                    if need > largest:
                        largest = need
                        why = (f"PatchCore's pre-coreset buffer: {references} reference maps at image_size "
                               f"{image_size} {resize}, model.context_ks {list(context)}")
    return largest, why
