"""The one registry of model kinds: how a run of each kind is fitted and scored, and how a saved one is scored
again. `hdmap fit-eval`, the Tune trainables and `hdmap eval` all go through here."""
from __future__ import annotations

from pathlib import Path

from hdmap.features.cache import FeatureCache
from hdmap.run.config import FAMILIES
from hdmap.data.domain import DomainData


def family(config: dict) -> str:
    return FAMILIES[config["model_name"]]


def fit_and_score(config: dict, data: DomainData, cache: FeatureCache | None = None, progress: bool = False,
                  tune_only: bool = False):
    """(fitted module, outputs, metrics.json dict) for any model kind; `tune_only` (search trials) scores only
    the tune maps where the model kind supports it (PatchCore)."""
    if family(config) == "feclip":
        from hdmap.run.feclip_hdmap import fit_and_score_feclip

        return fit_and_score_feclip(config, data, progress=progress)
    from hdmap.run import patchcore_run

    return patchcore_run.fit_and_score(config, data, cache or FeatureCache(progress=progress), tune_only=tune_only)


def score_saved(path: str | Path, config: dict, data: DomainData, cache_dir: str | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    """(outputs, metrics) of the model saved at `path`, scored with the function its run used (no refitting)."""
    if family(config) == "feclip":  # adapters (+ few-shot memory rebuilt from the same seeded references)
        from hdmap.run.feclip_hdmap import fit_and_score_feclip

        config = {**config, "train": {**config["train"], "source": "checkpoint", "checkpoint": str(path)}}
        _, outputs, metrics = fit_and_score_feclip(config, data, progress=progress)
        return outputs, metrics
    from hdmap.run.patchcore_run import MODULES, score_saved_module

    module = MODULES[config["model_name"]].load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return score_saved_module(module, config, data, FeatureCache(cache_dir, progress=progress))
