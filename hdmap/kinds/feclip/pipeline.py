"""FE-CLIP on HDMAP under the tune/holdout protocol: adapters from a checkpoint (zero-shot) or trained on band
anomalies synthesised on the domain's train normals (variant 1), then test maps scored by the image score plus,
with `fewshot.shots` > 0, a few-shot patch memory of the gated condition (variant 2).

`fit_feclip` and `score_feclip` are the one path: `hdmap fit-eval`, the Tune trainable (every epoch, on the tune
maps) and `hdmap eval` all score with `score_feclip`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from hdmap.condition_names import CONDITIONS
from hdmap.data.band_anomalies import band_training_set
from hdmap.data.splits import sample_per_condition
from hdmap.data.transforms import MapTransform
from hdmap.config import plain
from hdmap.gating.gates import build_gate
from hdmap.kinds.feclip.model import describe_clip
from hdmap.kinds.feclip.module import FEClipModule
from hdmap.models.memory_bank import MemoryBank
from hdmap.models.checkpoint_files import load_data_only
from hdmap.data.domain import DomainData
from hdmap.kinds.feclip.settings import FEClipRun
from hdmap.kinds.feclip.training import predict_feclip, predict_tokens, seed_everything, train_feclip
from hdmap.run.record import gate_block, run_record



class MapBatchDataset(Dataset):
    """Transformed maps with masks (resized to the maps' size) and labels."""

    def __init__(self, maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, transform: MapTransform):
        self.images = transform.batch(list(maps))
        self.masks, self.labels = torch.from_numpy(masks).float(), torch.from_numpy(labels).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "mask": self.masks[i], "label": self.labels[i]}


def map_transform(run: FEClipRun) -> MapTransform:
    return MapTransform(run.image_size, run.resize, run.normalisation, 1)


def band_dataset(run: FEClipRun, data: DomainData) -> MapBatchDataset:
    """Variant 1's training set: band anomalies synthesised on the domain's train normals (seeded)."""
    images, masks, labels = band_training_set(data.train_maps, run.train.fault_fraction, run.train.seed)
    return MapBatchDataset(images, masks, labels, map_transform(run))


def build_feclip(run: FEClipRun) -> FEClipModule:
    """The module with adapters initialised from `train.seed` (or loaded from `train.checkpoint`), given only its
    model settings and learning rates."""
    train = run.train
    seed_everything(train.seed)  # before the adapters are built: their initial weights follow the seed
    module = FEClipModule(model=plain(run.feclip), lr=train.lr, linear_lr=train.linear_lr)
    if train.source == "checkpoint":
        state = load_data_only(train.checkpoint)["state_dict"]
        missing = [k for k in module.state_dict() if k not in state and not k.startswith("model.visual.")]
        if missing:
            raise ValueError(f"{train.checkpoint}: not an FE-CLIP checkpoint of this configuration "
                             f"(missing {missing[:3]})")
        module.load_state_dict({**module.state_dict(), **state})
    return module


def fit_feclip(run: FEClipRun, data: DomainData, progress: bool = True, callbacks: list | None = None) -> FEClipModule:
    """Build (seeded) and, for `train.source=hdmap_bands`, train the adapters on synthetic bands of train normals."""
    train = run.train
    module = build_feclip(run)
    if train.source == "hdmap_bands":
        train_feclip(module, band_dataset(run, data), train.epochs, train.batch_size, callbacks=callbacks,
                     progress=progress, seed=train.seed, precision=train.precision)
    return module


@dataclass
class FEClipScores:
    """Scores of the test maps `indices`: image scores, maps at HDMAP size, routed conditions, notes."""

    indices: np.ndarray
    scores: np.ndarray
    maps: np.ndarray
    routed: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)


def score_feclip(module: FEClipModule, run: FEClipRun, data: DomainData, indices=None,
                 during_fit: bool = False) -> FEClipScores:
    """Zero-shot score of test maps (all, or `indices`), plus the few-shot memory when `fewshot.shots` > 0.
    Only train maps are used as references and for calibration; no statistic comes from test maps."""
    indices = np.arange(len(data.test_maps)) if indices is None else np.asarray(indices, int)
    maps, labels = data.test_maps[indices], data.test_labels[indices]
    transform = map_transform(run)
    test = MapBatchDataset(maps, np.zeros_like(maps), labels, transform)
    fewshot = bool(run.fewshot.shots)
    predictions = predict_feclip(module, test, run.train.batch_size, during_fit=during_fit,
                                 with_tokens=fewshot)  # one pass per test map serves both scores
    result = FEClipScores(indices, predictions["scores"], predictions["maps"])
    if fewshot:
        add_fewshot_memory(module, run, data, result, predictions["tokens"], during_fit)
    return result


def fit_and_score_feclip(run: FEClipRun, data: DomainData, progress: bool = True) -> tuple[FEClipModule, dict, dict]:
    start = time.perf_counter()
    module = fit_feclip(run, data, progress)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scored = score_feclip(module, run, data)
    kind = run.fewshot.gate.kind if scored.routed is not None else None
    outputs = {"scores": torch.from_numpy(scored.scores).double(), "patch_maps": torch.from_numpy(scored.maps)}
    timing = {"features": 0.0, "fit": fit_s, "predict": time.perf_counter() - start}
    metrics = run_record(run, data, outputs, gate_block(kind, scored.routed, data.test_conditions), scored.notes,
                         timing, clip=describe_clip(plain(run.feclip)))
    return module, outputs, metrics


def _tokens(module: FEClipModule, maps: np.ndarray, transform: MapTransform, during_fit: bool,
            batch: int = 32) -> torch.Tensor:
    blank = np.zeros((len(maps), 1, 1), dtype=np.float32)
    dataset = MapBatchDataset(maps, blank, np.zeros(len(maps), dtype=np.int64), transform)
    return predict_tokens(module, dataset, batch, during_fit=during_fit)


def calibration_scale(module: FEClipModule, references: np.ndarray, held_out: np.ndarray, name: str,
                      transform: MapTransform, during_fit: bool, notes: list[str]) -> tuple[MemoryBank, float]:
    """(memory of the references' patch tokens, median nearest-patch distance of held-out train normals to it).
    Without held-out maps the median comes from leave-one-out among the references (noted); with a single
    reference and nothing held out there is no train statistic: refused."""
    tokens = _tokens(module, references, transform, during_fit)
    bank = MemoryBank().fit(tokens.flatten(0, 1), 1.0)
    if len(held_out):
        calibration = _tokens(module, held_out, transform, during_fit).flatten(0, 1)
        return bank, float(bank.patch_distances(calibration).median().clamp_min(1e-6))
    if len(references) < 2:
        raise ValueError(f"few-shot calibration: condition '{name}' has 1 train map and none held out; its "
                         f"distances cannot be put on the other condition's scale (use more train maps of it)")
    distances = [MemoryBank().fit(torch.cat([tokens[:i], tokens[i + 1:]]).flatten(0, 1), 1.0)
                 .patch_distances(tokens[i]) for i in range(len(tokens))]
    notes.append(f"few-shot calibration of '{name}': no held-out train maps (all {len(references)} are references); "
                 f"scale from leave-one-out among the references")
    return bank, float(torch.cat(distances).median().clamp_min(1e-6))


def add_fewshot_memory(module: FEClipModule, run: FEClipRun, data: DomainData, result: FEClipScores,
                       test_tokens: torch.Tensor, during_fit: bool = False) -> None:
    """Variant 2: per condition, a memory of k train references' patch tokens; each test map's nearest-patch
    distances (from `test_tokens`, the scoring pass's) to the memory of its gated condition (divided by the median
    on held-out train normals of that condition) are added, times `weight`, to the zero-shot map and score. Memory
    and kNN live on the device the model ran on. Sets `result.routed`."""
    settings = run.fewshot
    gate = build_gate(settings.gate)
    if gate.uses_features:
        raise ValueError("few-shot FE-CLIP supports gates on intensity (intensity, discover, oracle)")
    transform = map_transform(run)
    assignment = gate.assign_train(torch.from_numpy(data.train_maps), None, data.train_truth)
    names = np.array(CONDITIONS)[assignment.numpy()]
    picked = sample_per_condition(names, settings.shots, run.train.seed)
    test_maps = data.test_maps[result.indices]
    known = [data.test_conditions[i] for i in result.indices]
    routed, _ = gate.route(torch.from_numpy(test_maps), None, known)
    routed = routed.to(test_tokens.device)
    side = int(round(test_tokens.shape[1] ** 0.5))
    distances = torch.zeros(test_tokens.shape[:2], device=test_tokens.device)
    for code, name in enumerate(CONDITIONS):
        chosen = set(picked[name].tolist())
        held_out = [i for i in np.flatnonzero(names == name) if i not in chosen][:settings.calibration_maps]
        bank, scale = calibration_scale(module, data.train_maps[picked[name]], data.train_maps[held_out], name,
                                        transform, during_fit, result.notes)
        members = routed == code
        if members.any():
            tokens = test_tokens[members]
            distances[members] = (bank.patch_distances(tokens.flatten(0, 1)) / scale).view(tokens.shape[:2])
    grid = distances.view(-1, 1, side, side)
    upsampled = torch.nn.functional.interpolate(grid, size=result.maps.shape[-2:], mode="bilinear",
                                                align_corners=False)[:, 0]
    result.maps = result.maps + settings.weight * upsampled.cpu().numpy()
    result.scores = result.scores + settings.weight * distances.max(dim=1).values.cpu().numpy()
    result.routed = routed.cpu()
