"""The PatchCore kinds: `hdmap_patchcore` (the default: PatchCore on condition-invariant inputs with a band
descriptor, fused with the band detector; gates and per-condition banks are settings) and `patchcore` (the baseline:
raw maps, one mixed bank of uniformly drawn references, PatchCore's max image score). Both fit and score through
pipeline.py over cached features. `model.fusion=band_only` hands the run to the band kind (`delegate`)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from hdmap.config import SPLIT_DEFAULT, ConfigError, merge, plain
from hdmap.data.domain import DomainData
from hdmap.features.backbones import (OFFLINE_BACKBONE, REAL_DATA_BACKBONE, build_backbone, check_input_size,
                                      preset_settings)
from hdmap.features.cache import FeatureCache
from hdmap.kinds.kind import ModelKind, TrialReport
from hdmap.kinds.patchcore import pipeline
from hdmap.kinds.patchcore.limits import precoreset_memory, shots_limit
from hdmap.kinds.patchcore.module import PatchCoreModule
from hdmap.kinds.patchcore.settings import PatchCoreSettings, PatchCoreRun
from hdmap.models.band import legacy_band_settings
from hdmap.run.record import trial_values

# The maps as they are: no band channel, no band score.
RAW_INPUTS = {"input_norm": "none", "band_weight": 0.0, "fusion": "none"}
# Plain PatchCore (the baseline) and the studies of H1-H3: raw maps and PatchCore's own image score (the largest
# patch distance); steps 1-3 ask their question on these, step 6 varies the inputs, the shots curve the score.
BASELINE_MODEL = {**RAW_INPUTS, "image_score": "max"}
# What the baseline is: one mixed bank of 2k uniformly drawn references (its runs refuse anything else).
BASELINE_BANK = {"bank_mode": "mixed", "reference_sampling": "uniform"}


def hdmap_defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    """The backbone's presets (default: the offline EfficientNet-Lite0 on the embedded data, DINOv2 ViT-S/14 by
    name on real data) and PatchCoreSettings's own defaults."""
    name = backbone or (REAL_DATA_BACKBONE if real_data else OFFLINE_BACKBONE)
    return {"model_name": "hdmap_patchcore", **preset_settings(name), "model": PatchCoreSettings().to_dict(),
            "split": dict(SPLIT_DEFAULT)}


def baseline_defaults(real_data: bool = False, backbone: str | None = None) -> dict:
    return merge(hdmap_defaults(real_data, backbone),
                 {"model_name": "patchcore", "model": {**BASELINE_MODEL, **BASELINE_BANK}})


def validate(run: PatchCoreRun) -> None:
    """Checks across settings (each value was checked against the settings tree, settings.py, and by its
    dataclass's own checks as the tree was built)."""
    check_input_size(run.backbone.name, run.image_size, run.resize)
    if run.model_name == "patchcore":
        for key, value in BASELINE_BANK.items():
            if getattr(run.model, key) != value:
                raise ConfigError(f"model.{key}={getattr(run.model, key)}: the patchcore kind is the baseline's one "
                                  f"mixed bank of uniformly drawn references (model.{key}={value}); for gated or "
                                  f"soft banks and per-condition references use --model hdmap_patchcore")


def upgrade(config: dict) -> dict:
    """A run config recorded by an older hdmap: band settings from before the filter family; the baseline's bank,
    which its module then forced whatever the record said."""
    model = dict(config.get("model") or {})
    if "band" in model:
        model["band"] = legacy_band_settings(model["band"])
    if config.get("model_name") == "patchcore":
        model.update(BASELINE_BANK)
    return {**config, "model": model}


def build_module(run: PatchCoreRun) -> PatchCoreModule:
    """The Lightning module of the run, given only its model settings."""
    return PatchCoreModule(model=plain(run.model))


def band_only(run: PatchCoreRun) -> dict | None:
    """model.fusion=band_only: the band kind's run config (its band settings and split), which the registry runs."""
    if run.model.fusion != "band_only":
        return None
    return {"model_name": "band", "band": plain(run.model.band), "split": plain(run.split)}


BAND_ONLY_NOTE = ("model.fusion=band_only: the band detector alone scored these maps (model.band settings); no "
                  "backbone ran and the other PatchCore settings of this config were not used")
BAND_ONLY_LABEL = "band detector alone (defaults)"


def reads(key: str, sampled: dict) -> bool:
    """Which searched keys a trial reads given the sampled model.fusion: the band detector alone reads only its band
    settings; PatchCore alone reads none of them."""
    fusion = sampled.get("model.fusion")
    if fusion == "band_only":
        return key == "model.fusion" or key.startswith(("model.band.", "split."))
    if fusion == "none":
        return not key.startswith("model.band.")
    return True


def band_only_start(space, base_config: dict) -> list[tuple[str, dict]]:
    """The band detector alone with its defaults, right after the defaults, where the space can reach it
    (model.fusion offers band_only) and the defaults are not it: seconds of CPU, and a search then always compares
    PatchCore's defaults with the backbone-free baseline it must beat."""
    fusion = next((p for p in space.params if p.key == "model.fusion"), None)
    if fusion is None or "band_only" not in fusion.values or base_config["model"].get("fusion") == "band_only":
        return []
    return [(BAND_ONLY_LABEL, merge(base_config, {"model": {"fusion": "band_only"}}))]


def fit_and_score(run: PatchCoreRun, data: DomainData, cache: FeatureCache | None = None, progress: bool = False,
                  tune_only: bool = False):
    return pipeline.fit_and_score(build_module(run), run, data, cache or FeatureCache(progress=progress),
                                  tune_only=tune_only)


def score_saved(path: str | Path, run: PatchCoreRun, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    return pipeline.score_saved_module(load_saved(path, run), run, data, FeatureCache(cache_dir, progress=progress))


def load_saved(path: str | Path, run: PatchCoreRun) -> PatchCoreModule:
    return PatchCoreModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def predict(module: PatchCoreModule, run: PatchCoreRun, maps, paths: list[str], cache: FeatureCache, device,
            domain=None) -> dict:
    return pipeline.predict_maps(module, run, maps, paths, cache, device)


def fit_over_seeds(run: PatchCoreRun, data: DomainData, cache: FeatureCache, metric: str, repeats: int = 1):
    """(module and metrics of the run's own seed, Tune values) where the objective is the mean over `repeats`
    reference/coreset seeds, the run's own first (with each seed's objective and their sd when repeats > 1)."""
    module, metrics, reports = None, None, []
    for seed in [run.model.seed + r for r in range(max(1, repeats))]:
        fitted, _, seeded = fit_and_score(replace(run, model=replace(run.model, seed=seed)), data, cache,
                                          tune_only=True)
        reports.append(trial_values(seeded, metric, repeats=max(1, repeats), feature_cache_hits=cache.hits))
        if module is None:
            module, metrics = fitted, seeded
    values = dict(reports[0])
    if len(reports) > 1:
        per_seed = [r["objective"] for r in reports]
        values.update({"objective": float(sum(per_seed) / len(per_seed)), "objective_per_seed": per_seed,
                       "objective_sd_seeds": float(torch.tensor(per_seed).std().item())})
    values["feature_cache_hits"] = cache.hits
    metrics["objective"] = {"metric": metric, **values}
    return module, metrics, values


def trial(run: PatchCoreRun, data: DomainData, cache: FeatureCache, metric: str, repeats: int,
          report: TrialReport) -> None:
    """One search trial: the fit-eval function on the tune maps (mean objective over `repeats` seeds), one report
    with the model of the run's own seed (the one `hdmap eval` reloads)."""
    module, metrics, values = fit_over_seeds(run, data, cache, metric, repeats)
    report(module, metrics, values)


def preflight(run: PatchCoreRun) -> None:
    """Build the backbone once in the driver: missing weights end the command in one line before Ray starts."""
    if run.model.fusion != "band_only":
        build_backbone(run.backbone)


_SHARED = dict(validate=validate, fit_and_score=fit_and_score, score_saved=score_saved, trial=trial,
               supports_repeats=True, preflight=preflight, settings=PatchCoreRun, delegate=band_only,
               delegate_note=BAND_ONLY_NOTE, reads=reads, space_limits=(shots_limit,), extra_starts=band_only_start,
               upgrade=upgrade, load_saved=load_saved, predict=predict, gpu_memory=precoreset_memory)
HDMAP_PATCHCORE = ModelKind("hdmap_patchcore", "PatchCore on condition-invariant inputs with a band descriptor, "
                            "fused with the band detector (gates and per-condition banks are settings)",
                            hdmap_defaults, **_SHARED)
PATCHCORE = ModelKind("patchcore", "plain PatchCore (baseline): raw maps, one mixed bank, max image score",
                      baseline_defaults, docs_with="hdmap_patchcore",
                      docs_note="`patchcore` is the same tree with the baseline's values: " + ", ".join(
                          f"`model.{k}={v}`" for k, v in {**BASELINE_MODEL, **BASELINE_BANK}.items()) + ".",
                      **_SHARED)
