"""Fit a (gated) PatchCore on cached features of one domain, score test, evaluate under the protocol."""
from __future__ import annotations

import time

import numpy as np
import torch

from hdmap.evaluation.metrics import protocol_metrics
from hdmap.features.backbones import BackboneSpec
from hdmap.features.cache import FeatureCache
from hdmap.gating.gates import gate_accuracy
from hdmap.models.lightning_patchcore import GatedPatchCore, PatchCore
from hdmap.run.domain_data import DomainData

MODULES = {"patchcore": PatchCore, "gated_patchcore": GatedPatchCore}


def build_module(config: dict) -> GatedPatchCore:
    return MODULES[config["model_name"]](backbone=config["backbone"], model=config["model"],
                                         image_size=config["image_size"], resize=config["resize"],
                                         normalisation=config["normalisation"])


def spec_of(config: dict) -> BackboneSpec:
    backbone = dict(config["backbone"])
    backbone["taps"] = tuple(backbone["taps"])
    return BackboneSpec(**backbone)


def item_features(config: dict, items: list, cache: FeatureCache) -> list:
    """Grids per tap of `items`, from the cache."""
    spec = spec_of(config)
    transform = cache.transform_for(spec, config["image_size"], config["resize"], config["normalisation"])
    return cache.features(spec, transform, [i.path for i in items])


def cached_features(config: dict, data: DomainData, cache: FeatureCache) -> tuple[list, list]:
    """(train grids, test grids) per tap, from the cache."""
    return item_features(config, data.train, cache), item_features(config, data.test, cache)


def fit_and_score(config: dict, data: DomainData, cache: FeatureCache) -> tuple[GatedPatchCore, dict, dict]:
    """(fitted module, raw outputs over all test maps, metrics.json dict)."""
    start = time.perf_counter()
    train_grids, test_grids = cached_features(config, data, cache)
    features_s = time.perf_counter() - start
    module = build_module(config)
    start = time.perf_counter()
    module.core.fit(train_grids, data.train_maps, data.train_truth)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = module.core.score(test_grids, data.test_maps, data.test_conditions)
    predict_s = time.perf_counter() - start
    metrics = metrics_of(config, data, outputs, module)
    metrics["timing_s"] = {"features": features_s, "fit": fit_s, "predict": predict_s}
    return module, outputs, metrics


def metrics_of(config: dict, data: DomainData, outputs: dict, module: GatedPatchCore) -> dict:
    scores = outputs["scores"].numpy().astype(np.float64)
    metrics = {"model": config["model_name"], "domain": data.domain, "config": config, "data_root": data.root}
    core = module.core.config
    gate_used = core.bank_mode != "mixed" or core.reference_sampling == "per_condition"
    kind = core.gate.kind if gate_used else None
    accuracy = gate_accuracy(outputs["route"], data.test_conditions) if kind else None
    metrics["gate"] = {"kind": kind, "accuracy": accuracy}
    metrics.update(protocol_metrics(scores, data.test_labels, data.test_conditions, data.split.tune,
                                    data.split.holdout))
    metrics["notes"] = list(module.core.notes)
    metrics["split"] = {"seed": data.split.seed, "tune_fraction": data.split.tune_fraction,
                        "n_tune": len(data.split.tune), "n_holdout": len(data.split.holdout)}
    return metrics


def score_with_module(module: GatedPatchCore, config: dict, data: DomainData, cache: FeatureCache) -> dict:
    """Score all test maps of `data` with an already fitted (e.g. reloaded) module (no train features needed)."""
    test_grids = item_features(config, data.test, cache)
    with torch.no_grad():
        return module.core.score(test_grids, data.test_maps, data.test_conditions)
