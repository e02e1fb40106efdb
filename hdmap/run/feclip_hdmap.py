"""FE-CLIP on HDMAP under the tune/holdout protocol: adapters from a checkpoint (zero-shot) or trained on band
anomalies synthesised on the domain's train normals (variant 1), then test maps scored by the image score."""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import Dataset

from hdmap.data.band_anomalies import band_training_set
from hdmap.data.transforms import MapTransform
from hdmap.data.splits import sample_per_condition
from hdmap.evaluation.metrics import protocol_metrics
from hdmap.gating.gates import Gate, GateConfig, gate_accuracy
from hdmap.models.memory_bank import MemoryBank
from hdmap.models.feclip.module import FEClipModule
from hdmap.run.domain_data import DomainData
from hdmap.run.feclip_run import predict_feclip, predict_tokens, train_feclip


class MapBatchDataset(Dataset):
    """Transformed maps with masks (resized to the maps' size) and labels."""

    def __init__(self, maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, transform: MapTransform):
        self.images = transform.batch(list(maps))
        self.masks, self.labels = torch.from_numpy(masks).float(), torch.from_numpy(labels).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "mask": self.masks[i], "label": self.labels[i]}


def map_transform(config: dict) -> MapTransform:
    return MapTransform(config["image_size"], config["resize"], config["normalisation"], 1)


def band_dataset(config: dict, data: DomainData) -> MapBatchDataset:
    """Variant 1's training set: band anomalies synthesised on the domain's train normals (seeded)."""
    train = config["train"]
    images, masks, labels = band_training_set(data.train_maps, train["fault_fraction"], train["seed"])
    return MapBatchDataset(images, masks, labels, map_transform(config))


def build_feclip(config: dict) -> FEClipModule:
    train = config["train"]
    module = FEClipModule(model=config["feclip"], lr=train["lr"], linear_lr=train["linear_lr"])
    if train["source"] == "checkpoint":
        state = torch.load(train["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
        missing = [k for k in module.state_dict() if k not in state and not k.startswith("model.visual.")]
        if missing:
            raise ValueError(f"{train['checkpoint']}: not an FE-CLIP checkpoint of this configuration "
                             f"(missing {missing[:3]})")
        module.load_state_dict({**module.state_dict(), **state})
    return module


def fit_and_score_feclip(config: dict, data: DomainData, progress: bool = True) -> tuple[FEClipModule, dict, dict]:
    train = config["train"]
    start = time.perf_counter()
    module = build_feclip(config)
    transform = map_transform(config)
    if train["source"] == "hdmap_bands":
        torch.manual_seed(train["seed"])
        train_feclip(module, band_dataset(config, data), train["epochs"], train["batch_size"], progress=progress)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    test = MapBatchDataset(data.test_maps, np.zeros_like(data.test_maps), data.test_labels, transform)
    predictions = predict_feclip(module, test, train["batch_size"])
    gate_info = {"kind": None, "accuracy": None}
    if config["fewshot"]["shots"]:
        routed = add_fewshot_memory(module, config, data, transform, predictions)
        gate_info = {"kind": config["fewshot"]["gate"]["kind"], "accuracy": gate_accuracy(routed, data.test_conditions)}
    outputs = {"scores": torch.from_numpy(predictions["scores"]).double(),
               "patch_maps": torch.from_numpy(predictions["maps"])}
    metrics = {"model": "feclip", "domain": data.domain, "config": config, "data_root": data.root,
               "gate": gate_info}
    metrics.update(protocol_metrics(predictions["scores"], data.test_labels, data.test_conditions,
                                    data.split.tune, data.split.holdout))
    metrics["timing_s"] = {"features": 0.0, "fit": fit_s, "predict": time.perf_counter() - start}
    return module, outputs, metrics


def _tokens(module: FEClipModule, maps: np.ndarray, transform: MapTransform, batch: int = 32) -> torch.Tensor:
    blank = np.zeros((len(maps), 1, 1), dtype=np.float32)
    return predict_tokens(module, MapBatchDataset(maps, blank, np.zeros(len(maps), dtype=np.int64), transform), batch)


def add_fewshot_memory(module: FEClipModule, config: dict, data: DomainData, transform: MapTransform,
                       predictions: dict) -> torch.Tensor:
    """Variant 2: per condition, a memory of k train references' patch tokens; each test map's nearest-patch
    distances to the memory of its gated condition (divided by the median on held-out train normals of that
    condition) are added, times `weight`, to the zero-shot map and score. Returns the routed conditions."""
    settings = config["fewshot"]
    gate = Gate(GateConfig(**settings["gate"]))
    train_maps = torch.from_numpy(data.train_maps)
    if gate.uses_features:
        raise ValueError("few-shot FE-CLIP supports gates on intensity (intensity, discover, oracle)")
    assignment = gate.assign_train(train_maps, None, data.train_truth)
    names = np.array(["cold", "warm"])[assignment.numpy()]
    picked = sample_per_condition(names, settings["shots"], config["train"]["seed"])
    routed, _ = gate.route(torch.from_numpy(data.test_maps), None, data.test_conditions)
    test_tokens = _tokens(module, data.test_maps, transform)
    side = int(round(test_tokens.shape[1] ** 0.5))
    distances = torch.zeros(test_tokens.shape[:2])
    for code, name in enumerate(("cold", "warm")):
        bank = MemoryBank().fit(_tokens(module, data.train_maps[picked[name]], transform).flatten(0, 1), 1.0)
        held_out = [i for i in np.flatnonzero(names == name) if i not in set(picked[name])]
        held_out = held_out[:settings["calibration_maps"]]
        scale = 1.0
        if held_out:
            calibration = _tokens(module, data.train_maps[held_out], transform).flatten(0, 1)
            scale = float(bank.patch_distances(calibration).median().clamp_min(1e-6))
        members = routed == code
        if members.any():
            tokens = test_tokens[members]
            distances[members] = (bank.patch_distances(tokens.flatten(0, 1)) / scale).view(tokens.shape[:2])
    grid = distances.view(-1, 1, side, side)
    size = predictions["maps"].shape[-2:]
    upsampled = torch.nn.functional.interpolate(grid, size=size, mode="bilinear", align_corners=False)[:, 0]
    predictions["maps"] = predictions["maps"] + settings["weight"] * upsampled.numpy()
    predictions["scores"] = predictions["scores"] + settings["weight"] * distances.max(dim=1).values.numpy()
    return routed
