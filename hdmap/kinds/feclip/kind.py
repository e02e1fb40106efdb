"""The FE-CLIP kind: frozen CLIP + frequency adapters, from a checkpoint (zero-shot) or trained on band anomalies of
the domain's train normals (variant 1), plus an optional few-shot memory of the gated condition (variant 2). Fits
and scores through pipeline.py; its trials report after every epoch (the search adds ASHA)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from hdmap.config import SPLIT_DEFAULT, ConfigError, plain
from hdmap.data.domain import DomainData
from hdmap.evaluation.protocol import tune_metrics
from hdmap.kinds.feclip.limits import activation_memory, shots_limit
from hdmap.kinds.kind import ModelKind, TrialReport
from hdmap.kinds.feclip.settings import FEClipRun, FEClipTrainSettings, FewShotSettings
from hdmap.kinds.feclip.model import FEClipSettings
from hdmap.kinds.feclip.module import FEClipModule
from hdmap.kinds.feclip.pipeline import build_feclip, fit_and_score_feclip, fit_feclip, score_feclip
from hdmap.run.record import tune_values


def defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    """FEClipSettings's own defaults (CLIP ViT-L/14@336, the paper's taps and windows) at CLIP's input size."""
    return {"model_name": "feclip", "image_size": 336, "resize": "bilinear", "normalisation": "clip",
            "feclip": plain(FEClipSettings()), "train": plain(FEClipTrainSettings()), "fewshot": plain(FewShotSettings()),
            "split": dict(SPLIT_DEFAULT)}


def validate(run: FEClipRun) -> None:
    """Checks across settings (each value was checked against the settings tree: settings.py): the checkpoint a
    source names, two prompts, a band the DCT windows take, a CLIP shape open_clip knows and taps within its tower."""
    if run.train.source == "checkpoint" and not run.train.checkpoint:
        raise ConfigError("train.source=checkpoint needs train.checkpoint=/path/to/feclip.ckpt")
    settings = run.feclip
    if len(settings.prompts) != 2 or not all(isinstance(p, str) and p.strip() for p in settings.prompts):
        raise ConfigError(f"config key 'feclip.prompts' expects two texts (the normal and the anomalous prompt), got "
                          f"{list(settings.prompts)!r}")
    check_band(settings)
    layers = tower_layers(settings)
    if layers is not None and max(settings.taps) > layers:
        raise ConfigError(f"config key 'feclip.taps' {list(settings.taps)}: the CLIP tower has {layers} blocks "
                          f"(1-based taps up to {layers})")


def check_band(settings) -> None:
    band = settings.band
    if isinstance(band, str):
        if band not in ("all", "low", "mid", "high"):
            raise ConfigError(f"config key 'feclip.band' expects all, low, mid, high or a square 0/1 mask, got {band!r}")
        return
    rows = band if isinstance(band, (list, tuple)) else None
    side = len(rows) if rows else 0
    square = bool(rows) and all(isinstance(r, (list, tuple)) and len(r) == side and
                                all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in rows)
    if not square or side != settings.ffe_window or side != settings.lfs_window:
        raise ConfigError(f"config key 'feclip.band': an explicit mask is a {settings.ffe_window} x "
                          f"{settings.ffe_window} list of numbers (feclip.ffe_window and feclip.lfs_window both "
                          f"{settings.ffe_window}), got {band!r}")


def tower_layers(settings) -> int | None:
    """Blocks of the CLIP vision tower the settings build (from open_clip's packaged config or clip_kwargs)."""
    import dataclasses

    from open_clip import get_model_config
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    shape = settings.clip_kwargs
    if shape:
        unknown = set(shape) - {"embed_dim", "vision_cfg", "text_cfg"}
        for part, cfg in (("vision_cfg", CLIPVisionCfg), ("text_cfg", CLIPTextCfg)):
            fields = {f.name for f in dataclasses.fields(cfg)}
            unknown |= {f"{part}.{key}" for key in (shape.get(part) or {}) if key not in fields}
        if unknown:
            raise ConfigError(f"config key 'feclip.clip_kwargs': open_clip's CLIP has no {sorted(unknown)}")
        return (shape.get("vision_cfg") or {}).get("layers")
    config = get_model_config(settings.clip_model)
    if config is None:
        raise ConfigError(f"config key 'feclip.clip_model': open_clip knows no model {settings.clip_model!r}")
    return config["vision_cfg"].get("layers")


def fit_and_score(run: FEClipRun, data: DomainData, cache=None, progress: bool = False, tune_only: bool = False):
    return fit_and_score_feclip(run, data, progress=progress)


def score_saved(path: str | Path, run: FEClipRun, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    """The saved adapters (the few-shot memory is rebuilt from the same seeded train references)."""
    saved = replace(run, train=replace(run.train, source="checkpoint", checkpoint=str(path)))
    _, outputs, metrics = fit_and_score_feclip(saved, data, progress=progress)
    return outputs, metrics


def load_saved(path: str | Path, run: FEClipRun) -> FEClipModule:
    """The saved adapters on a freshly built frozen CLIP."""
    return build_feclip(replace(run, train=replace(run.train, source="checkpoint", checkpoint=str(path))))


def predict(module: FEClipModule, run: FEClipRun, maps, paths: list[str], cache, device, domain=None) -> dict:
    """Outputs of new maps (`hdmap predict`); variant 2's few-shot memory is rebuilt from the run's own train maps
    (`domain`), as `hdmap eval` rebuilds it."""
    if run.fewshot.shots and domain is None:
        raise ValueError("few-shot FE-CLIP scores new maps against its run's train references: the run's data root "
                         "is needed (pass --data-root)")
    batch = SimpleNamespace(test_maps=maps, test_labels=np.zeros(len(maps), dtype=int),
                            test_conditions=["unknown"] * len(maps), train_maps=getattr(domain, "train_maps", None),
                            train_truth=getattr(domain, "train_truth", None))
    scored = score_feclip(module, run, batch)
    return {"scores": torch.from_numpy(scored.scores).double(), "patch_maps": torch.from_numpy(scored.maps),
            "route": scored.routed}


def trial(run: FEClipRun, data: DomainData, cache, metric: str, repeats: int, report: TrialReport) -> None:
    """Train the adapters; after every epoch score the tune maps with `score_feclip` (the scorer of fit-eval and
    eval, few-shot memory included) and report, so ASHA can stop weak trials."""
    import lightning as L

    tune_idx = np.asarray(data.split.tune)

    def report_epoch(module, epoch: int, train_loss: float | None = None) -> None:
        scored = score_feclip(module, run, data, tune_idx, during_fit=epoch > 0)
        values = tune_metrics(scored.scores, data.test_labels[tune_idx], [data.test_conditions[i] for i in tune_idx])
        report(module, {"tune": values, "notes": scored.notes},
               {**tune_values(values, metric), "epoch": epoch, "train_loss": train_loss})  # in Tune's TensorBoard

    class ReportEachEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            loss = trainer.callback_metrics.get("train_loss")
            report_epoch(module, trainer.current_epoch + 1, float(loss) if loss is not None else None)

    module = fit_feclip(run, data, progress=False, callbacks=[ReportEachEpoch()])
    if run.train.source != "hdmap_bands":  # nothing trained: one report of the loaded/untrained adapters
        report_epoch(module, 0)


FECLIP = ModelKind("feclip", "FE-CLIP: frozen CLIP with frequency adapters (zero-shot, or trained on band anomalies)",
                   defaults, validate, fit_and_score, score_saved, trial, iterative=True, settings=FEClipRun,
                   space_limits=(shots_limit,), load_saved=load_saved, predict=predict, gpu_memory=activation_memory,
                   predict_reads_train=lambda run: run.fewshot.shots > 0)
