"""PatchCore on one domain: the one fit function and the one score function that `hdmap fit-eval`, the
Tune trainable and `hdmap eval` all call (through the PatchCore kinds, hdmap/kinds/patchcore/kind.py). Both run through
a Lightning Trainer (accelerator=auto) over cached features extracted on the Trainer's device, so backbone, banks
and kNN live on the accelerator when there is one."""
from __future__ import annotations

import time

import numpy as np
import torch

from hdmap.data.condition_statistics import ConditionStatistics
from hdmap.data.domain import DomainData, train_sample
from hdmap.features.cache import FeatureCache
from hdmap.features.feature_datamodule import FeatureDataModule
from hdmap.models.coreset_store import CoresetStore
from hdmap.kinds.patchcore.module import PatchCoreModule, gather_predictions
from hdmap.kinds.patchcore.settings import AUTO_CHOICES, fit_condition_stats
from hdmap.kinds.patchcore.settings import PatchCoreRun
from hdmap.run.record import gate_block, run_record
from hdmap.run.trainer import accelerator_device, make_trainer


def item_features(run: PatchCoreRun, items: list, cache: FeatureCache,
                  condition_stats: ConditionStatistics | None = None, device: str | torch.device | None = None) -> list:
    """Grids per tap of `items`, from the cache (extracted on `device` when missing); `condition_stats` (fitted on
    train) normalises the maps before the backbone when the run's input_norm says so."""
    transform = cache.transform_for(run.backbone, run.image_size, run.resize, run.normalisation, device)
    return cache.features(run.backbone, transform, [i.path for i in items], condition_stats, device)


def cached_features(run: PatchCoreRun, data: DomainData, cache: FeatureCache,
                    condition_stats: ConditionStatistics | None = None,
                    device: str | torch.device | None = None) -> tuple[list, list]:
    """(train grids, test grids) per tap, from the cache."""
    return (item_features(run, data.train, cache, condition_stats, device),
            item_features(run, data.test, cache, condition_stats, device))


def fit_patchcore(module: PatchCoreModule, train_grids: list, data: DomainData,
                  condition_stats: ConditionStatistics | None = None, accelerator: str = "auto",
                  batch_size: int = 32) -> PatchCoreModule:
    """Gate + reference choice on all train maps, then a Trainer epoch over the chosen maps builds the banks."""
    features = module.prepare_fit(train_grids, data.train_maps, condition_stats, data.train_truth, batch_size)
    make_trainer(accelerator).fit(module, datamodule=features)
    return module


def score_patchcore(module: PatchCoreModule, test_grids: list, data: DomainData, accelerator: str = "auto",
                    batch_size: int = 128, tune_only: bool = False) -> dict:
    """{'scores', 'patch_maps', 'route', 'p_warm', 'index', ...} over all test maps (or the tune maps only), in
    test order (CPU tensors). Tune and holdout maps are scored in separate passes with the same batches every
    time, so a tune map's score is bit-for-bit what a search trial (tune maps only) computed: kNN and matrix
    libraries round differently for differently composed batches."""
    passes = [data.split.tune] if tune_only else [data.split.tune, data.split.holdout]
    features = FeatureDataModule([], data.train_maps, test_grids, data.test_maps, data.test_conditions, batch_size)
    trainer = make_trainer(accelerator)
    outputs = []
    for indices in passes:
        features.predict_indices = np.asarray(indices, dtype=np.int64)
        outputs.append(gather_predictions(trainer.predict(module, datamodule=features)))
    merged = {key: torch.cat([o[key] for o in outputs]) for key in outputs[0]}
    if not tune_only:
        if sorted(merged["index"].tolist()) != list(range(len(data.test_maps))):
            raise ValueError(f"the tune/holdout split does not cover the {len(data.test_maps)} test maps once each")
        order = torch.argsort(merged["index"])
        merged = {key: value[order] for key, value in merged.items()}
    return merged


def fit_and_score(module: PatchCoreModule, run: PatchCoreRun, data: DomainData, cache: FeatureCache,
                  accelerator: str = "auto", tune_only: bool = False) -> tuple[PatchCoreModule, dict, dict]:
    """(`module` fitted, raw outputs over all test maps, metrics.json dict). `tune_only` (a search trial) scores
    only the tune maps: the objective needs no more, and holdout stays unseen until the best model is evaluated."""
    start = time.perf_counter()
    data = train_sample(data, run.model.train_maps, run.model.seed)  # model.train_maps: the fit reads a sample
    if cache.enabled:  # greedy coreset orders are cached beside the features
        module.core.coreset_store = CoresetStore(cache.root / "coresets")
    device = accelerator_device(accelerator)  # the backbone runs where the Trainer puts the banks
    condition_stats = fit_condition_stats(module.core.config, data.train_maps)  # the one fit, on train maps only
    train_grids, test_grids = cached_features(run, data, cache, condition_stats, device)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    fit_patchcore(module, train_grids, data, condition_stats, accelerator)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = score_patchcore(module, test_grids, data, accelerator, tune_only=tune_only)
    decide_fusion(module, outputs, data)
    predict_s = time.perf_counter() - start
    timing = {"features": features_s, "fit": fit_s, "predict": predict_s}
    return module, outputs, metrics_of(run, data, outputs, module, timing, device)


def decide_fusion(module: PatchCoreModule, outputs: dict, data: DomainData) -> None:
    """fusion=auto: choose max, PatchCore's z or the band z on the tune maps' AUROC (thresholds and settings are
    chosen on tune), apply the choice to every scored map and keep it in the module (its checkpoint scores with it)."""
    core = module.core
    if core.config.fusion != "auto":
        return
    index = outputs["index"].numpy()
    tune = np.isin(index, data.split.tune)
    aurocs = core.choose_fusion(outputs["fusion_parts"][tune], data.test_labels[index[tune]])
    outputs["scores"] = core.fuse(outputs["fusion_parts"]).to(outputs["scores"].dtype)
    chosen = AUTO_CHOICES[int(core.fusion_choice)]
    core.notes.append(f"fusion auto: {chosen} (tune AUROC " + ", ".join(f"{name} {100 * value:.1f} %" for name, value
                                                                      in aurocs.items()) + ")")


def score_saved_module(module: PatchCoreModule, run: PatchCoreRun, data: DomainData, cache: FeatureCache,
                       accelerator: str = "auto") -> tuple[dict, dict]:
    """(outputs, metrics) of an already fitted (e.g. reloaded) module; needs no train features."""
    start = time.perf_counter()
    device = accelerator_device(accelerator)
    # the condition statistics as fitted, from the checkpoint
    test_grids = item_features(run, data.test, cache, module.core.condition_stats, device)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = score_patchcore(module, test_grids, data, accelerator)
    timing = {"features": features_s, "fit": 0.0, "predict": time.perf_counter() - start}
    return outputs, metrics_of(run, data, outputs, module, timing, device)


def metrics_of(run: PatchCoreRun, data: DomainData, outputs: dict, module: PatchCoreModule, timing: dict,
               backbone_device: torch.device | None = None) -> dict:
    """The run record (hdmap/run/record.py) with what the fit decided beside the settings, which stay as asked."""
    core = module.core.config
    gate_used = core.bank_mode != "mixed" or core.reference_sampling == "per_condition"
    kind = core.gate.kind if gate_used else None
    scored = outputs["index"].numpy()
    gate = gate_block(kind, outputs["route"], [data.test_conditions[i] for i in scored], module.core.gate.train_source)
    decisions = {"fallback": module.core.fallback,
                 "fusion": AUTO_CHOICES[int(module.core.fusion_choice)] if core.fusion == "auto" else None}
    devices = {"backbone": str(backbone_device) if backbone_device else None, **module.devices_used}
    return run_record(run, data, outputs, gate, module.core.notes, timing, devices, fit_decisions=decisions)


SCORE_BATCH = 128  # maps per scoring batch, as fit-eval's


def predict_maps(module: PatchCoreModule, run: PatchCoreRun, maps: np.ndarray, paths: list[str], cache: FeatureCache,
                 device: torch.device) -> dict:
    """Outputs of new maps (`hdmap predict`): their features from the cache (extracted on `device` when missing) and
    the fitted core's scores, on `device`."""
    module.to(device)
    transform = cache.transform_for(run.backbone, run.image_size, run.resize, run.normalisation, device)
    grids = cache.features(run.backbone, transform, list(paths), module.core.condition_stats, device)
    parts = []
    for start in range(0, len(maps), SCORE_BATCH):  # in float32, as the datamodule hands fit-eval's batches
        chosen = slice(start, start + SCORE_BATCH)
        batch = [torch.from_numpy(np.asarray(g[chosen], dtype=np.float32)) for g in grids]
        parts.append(module.core.score_batch(batch, torch.from_numpy(np.asarray(maps[chosen], dtype=np.float32))))
    out = {key: torch.cat([part[key].cpu() for part in parts]) for key in parts[0]}
    config = module.core.config
    if not (config.bank_mode != "mixed" or config.reference_sampling == "per_condition"):
        out["route"] = None  # the gate chose nothing: no condition to report
    return out
