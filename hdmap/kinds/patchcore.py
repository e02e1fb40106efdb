"""The PatchCore kinds: `gated_patchcore` (the default: condition statistics, gate, banks, band descriptor) and
`patchcore` (the baseline: raw maps, one mixed bank of uniformly drawn references, PatchCore's max image score).
Both fit and score through run/patchcore_pipeline.py over cached features."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from hdmap.config import SPLIT_DEFAULT, ConfigError, merge, plain
from hdmap.data.domain import DomainData
from hdmap.features.backbones import BACKBONES, OFFLINE_BACKBONE, REAL_DATA_BACKBONE, build_backbone
from hdmap.features.cache import FeatureCache
from hdmap.kinds import band as band_kind
from hdmap.kinds.kind import ModelKind, TrialReport, trial_values
from hdmap.run.run_settings import BandRun, PatchCoreRun
from hdmap.models.lightning_patchcore import GatedPatchCore, PatchCore
from hdmap.models.patchcore_config import PatchCoreConfig
from hdmap.run import patchcore_pipeline

# The maps as they are: no band channel, no band score.
RAW_INPUTS = {"input_norm": "none", "band_weight": 0.0, "fusion": "none"}
# Plain PatchCore (the baseline) and the studies of H1-H3: raw maps and PatchCore's own image score (the largest
# patch distance); steps 1-3 ask their question on these, step 6 varies the inputs, the shots curve the score.
BASELINE_MODEL = {**RAW_INPUTS, "image_score": "max"}


def backbone_settings(name: str) -> dict:
    """The config keys a backbone choice sets: backbone.{name, weights, taps}, image_size, resize, normalisation."""
    if name not in BACKBONES:
        raise ConfigError(f"no presets for backbone {name!r} (presets: {sorted(BACKBONES)}); for another timm / "
                          f"open_clip model set backbone.name, backbone.taps and image_size with --set")
    entry = BACKBONES[name]
    return {"backbone": {"name": name, "weights": entry.weights, "taps": list(entry.taps), "model_kwargs": {}},
            "image_size": entry.image_size, "resize": entry.resize, "normalisation": "backbone"}


def gated_defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    """The backbone's presets (default: the offline EfficientNet-Lite0 on the embedded data, DINOv2 ViT-S/14 by
    name on real data) and PatchCoreConfig's own defaults."""
    name = backbone or (REAL_DATA_BACKBONE if real_data else OFFLINE_BACKBONE)
    return {"model_name": "gated_patchcore", **backbone_settings(name), "model": PatchCoreConfig().to_dict(),
            "split": dict(SPLIT_DEFAULT)}


def baseline_defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    return merge(gated_defaults(real_data, backbone), {"model_name": "patchcore", "model": BASELINE_MODEL})


def validate(run: PatchCoreRun) -> None:
    """Checks across settings (each value was checked against the settings tree: hdmap/run/run_settings.py,
    and by its dataclass's own checks as the tree was built)."""
    entry = BACKBONES.get(run.backbone.name)
    if entry is not None and entry.fixed_size and (run.image_size != entry.image_size or run.resize == "aspect"):
        raise ConfigError(f"backbone {run.backbone.name} takes {entry.image_size} px squares only (its positional "
                          f"embeddings fix the input size): image_size={entry.image_size} and resize bilinear or "
                          f"nearest, not {run.image_size} / {run.resize}")


MODULES = {"patchcore": PatchCore, "gated_patchcore": GatedPatchCore}


def build_module(run: PatchCoreRun) -> GatedPatchCore:
    """The Lightning module of the run's kind, given only its model settings."""
    return MODULES[run.model_name](model=plain(run.model))


def band_only(run: PatchCoreRun) -> bool:
    """Whether this run is the band detector alone (model.fusion=band_only): no backbone, no bank."""
    return run.model.fusion == "band_only"


BAND_ONLY_NOTE = ("model.fusion=band_only: the band detector alone scored these maps (model.band settings); no "
                  "backbone ran and the other PatchCore settings of this config were not used")


def as_band_run(run: PatchCoreRun) -> BandRun:
    """The band kind's run of a band_only PatchCore run."""
    return BandRun(band=run.model.band, split=run.split)


def _band_metrics(run: PatchCoreRun, metrics: dict) -> dict:
    metrics.update({"model": run.model_name, "config": plain(run), "band_run": plain(as_band_run(run))})
    metrics["notes"] = [BAND_ONLY_NOTE] + metrics["notes"]
    return metrics


def fit_and_score(run: PatchCoreRun, data: DomainData, cache: FeatureCache | None = None, progress: bool = False,
                  tune_only: bool = False):
    if band_only(run):
        module, outputs, metrics = band_kind.fit_and_score(as_band_run(run), data, tune_only=tune_only)
        return module, outputs, _band_metrics(run, metrics)
    return patchcore_pipeline.fit_and_score(build_module(run), run, data, cache or FeatureCache(progress=progress),
                                            tune_only=tune_only)


def score_saved(path: str | Path, run: PatchCoreRun, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    if band_only(run):
        outputs, metrics = band_kind.score_saved(path, as_band_run(run), data)
        return outputs, _band_metrics(run, metrics)
    module = MODULES[run.model_name].load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return patchcore_pipeline.score_saved_module(module, run, data, FeatureCache(cache_dir, progress=progress))


def repeat_seeds(run: PatchCoreRun, repeats: int) -> list[int]:
    """Reference/coreset seeds of a trial: the run's own seed first, then the next ones (one: the band detector
    alone has no seed)."""
    if band_only(run):
        return [run.model.seed]
    return [run.model.seed + r for r in range(max(1, repeats))]


def fit_over_seeds(run: PatchCoreRun, data: DomainData, cache: FeatureCache, metric: str, repeats: int = 1):
    """(module and metrics of the run's own seed, Tune values) where the objective is the mean over `repeats`
    reference/coreset seeds (with each seed's objective and their sd when repeats > 1)."""
    module, metrics, reports = None, None, []
    for seed in repeat_seeds(run, repeats):
        fitted, _, seeded = fit_and_score(replace(run, model=replace(run.model, seed=seed)), data, cache,
                                          tune_only=True)
        reports.append(trial_values(seeded["tune"], metric))
        if module is None:
            module, metrics = fitted, seeded
    values = dict(reports[0])
    if len(reports) > 1:
        per_seed = [r["objective"] for r in reports]
        values.update({"objective": float(sum(per_seed) / len(per_seed)), "objective_per_seed": per_seed,
                       "objective_sd_seeds": float(torch.tensor(per_seed).std().item())})
    metrics["objective"] = {"metric": metric, "repeats": len(reports), **values}
    return module, metrics, values


def trial(run: PatchCoreRun, data: DomainData, cache: FeatureCache, metric: str, repeats: int,
          report: TrialReport) -> None:
    """One search trial: the fit-eval function on the tune maps (mean objective over `repeats` seeds), one report
    with the model of the run's own seed (the one `hdmap eval` reloads)."""
    module, metrics, values = fit_over_seeds(run, data, cache, metric, repeats)
    values.update({"gate_accuracy": metrics["gate"]["accuracy"], "features_s": metrics["timing_s"]["features"],
                   "fit_s": metrics["timing_s"]["fit"], "predict_s": metrics["timing_s"]["predict"],
                   "feature_cache_hits": cache.hits, "repeats": metrics["objective"]["repeats"]})
    report(module, metrics, values)


def preflight(run: PatchCoreRun) -> None:
    """Build the backbone once in the driver: missing weights end the command in one line before Ray starts."""
    if band_only(run):
        return
    build_backbone(run.backbone)


_SHARED = dict(validate=validate, fit_and_score=fit_and_score, score_saved=score_saved, trial=trial,
               supports_repeats=True, preflight=preflight, settings=PatchCoreRun)
GATED_PATCHCORE = ModelKind("gated_patchcore", "PatchCore with condition statistics, gate and band descriptor",
                            gated_defaults, **_SHARED)
PATCHCORE = ModelKind("patchcore", "plain PatchCore (baseline): raw maps, one mixed bank, max image score",
                      baseline_defaults, **_SHARED)
