"""The FE-CLIP kind: frozen CLIP + frequency adapters, from a checkpoint (zero-shot) or trained on band anomalies of
the domain's train normals (variant 1), plus an optional few-shot memory of the gated condition (variant 2). Fits
and scores through run/feclip_pipeline.py; its trials report after every epoch (the search adds ASHA)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hdmap.config import SPLIT_DEFAULT, ConfigError, build, check_fields, plain
from hdmap.data.domain import DomainData
from hdmap.evaluation.protocol import tune_metrics
from hdmap.gating.gates import GateConfig
from hdmap.kinds.kind import ModelKind, TrialReport, trial_values
from hdmap.models.feclip.model import FEClipConfig
from hdmap.run.feclip_pipeline import fit_and_score_feclip, fit_feclip, score_feclip

TRAIN_SOURCES = ("checkpoint", "hdmap_bands", "none")
# source: `checkpoint` (adapters trained elsewhere, e.g. by experiments/feclip_benchmark.py), `hdmap_bands`
# (variant 1: train on band anomalies synthesised on this domain's train normals), `none` (untrained)
TRAIN_DEFAULT = {"source": "hdmap_bands", "checkpoint": None, "epochs": 9, "batch_size": 16, "lr": 5e-4,
                 "linear_lr": 5e-4, "fault_fraction": 0.5, "seed": 0}
# variant 2: a few-shot patch memory of the gated condition's train references, added to the zero-shot map
FEWSHOT_DEFAULT = {"shots": 0, "weight": 1.0, "gate": {"kind": "intensity"}, "calibration_maps": 8}


def defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    """FEClipConfig's own defaults (CLIP ViT-L/14@336, the paper's taps and windows) at CLIP's input size."""
    return {"model_name": "feclip", "image_size": 336, "resize": "bilinear", "normalisation": "clip",
            "feclip": plain(FEClipConfig()), "train": dict(TRAIN_DEFAULT),
            "fewshot": {**FEWSHOT_DEFAULT, "gate": plain(GateConfig(**FEWSHOT_DEFAULT["gate"]))},
            "split": dict(SPLIT_DEFAULT)}


def validate(config: dict) -> None:
    check_fields("feclip", config["feclip"], FEClipConfig)
    check_fields("fewshot.gate", config["fewshot"]["gate"], GateConfig)
    build("feclip", FEClipConfig, config["feclip"])
    build("fewshot.gate", GateConfig, config["fewshot"]["gate"])
    from hdmap.models.feclip.adapters import LFS_STATS

    if config["feclip"].get("lfs_stat", "mean") not in LFS_STATS:
        raise ConfigError(f"feclip.lfs_stat must be one of {LFS_STATS}, got {config['feclip']['lfs_stat']!r}")
    if config["train"]["source"] not in TRAIN_SOURCES:
        raise ConfigError(f"train.source must be checkpoint, hdmap_bands or none, got {config['train']['source']!r}")
    if config["train"]["source"] == "checkpoint" and not config["train"]["checkpoint"]:
        raise ConfigError("train.source=checkpoint needs train.checkpoint=/path/to/feclip.ckpt")


def fit_and_score(config: dict, data: DomainData, cache=None, progress: bool = False, tune_only: bool = False):
    return fit_and_score_feclip(config, data, progress=progress)


def score_saved(path: str | Path, config: dict, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    """The saved adapters (the few-shot memory is rebuilt from the same seeded train references)."""
    config = {**config, "train": {**config["train"], "source": "checkpoint", "checkpoint": str(path)}}
    _, outputs, metrics = fit_and_score_feclip(config, data, progress=progress)
    return outputs, metrics


def trial(config: dict, data: DomainData, cache, metric: str, repeats: int, report: TrialReport) -> None:
    """Train the adapters; after every epoch score the tune maps with `score_feclip` (the scorer of fit-eval and
    eval, few-shot memory included) and report, so ASHA can stop weak trials."""
    import lightning as L

    tune_idx = np.asarray(data.split.tune)

    def report_epoch(module, epoch: int) -> None:
        scored = score_feclip(module, config, data, tune_idx, during_fit=epoch > 0)
        values = tune_metrics(scored.scores, data.test_labels[tune_idx], [data.test_conditions[i] for i in tune_idx])
        report(module, {"tune": values, "notes": scored.notes}, {**trial_values(values, metric), "epoch": epoch})

    class ReportEachEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            report_epoch(module, trainer.current_epoch + 1)

    module = fit_feclip(config, data, progress=False, callbacks=[ReportEachEpoch()])
    if config["train"]["source"] != "hdmap_bands":  # nothing trained: one report of the loaded/untrained adapters
        report_epoch(module, 0)


FECLIP = ModelKind("feclip", "FE-CLIP: frozen CLIP with frequency adapters (zero-shot, or trained on band anomalies)",
                   defaults, validate, fit_and_score, score_saved, trial, iterative=True)
