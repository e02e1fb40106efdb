"""Ray Tune function trainables: a trial config -> fitted model -> objective on the tune split + checkpoint.

Heavy state is shared: features come from the on-disk feature cache (computed once per backbone setting and
reused by every trial and worker), and the domain's maps are read once per worker process.
"""
from __future__ import annotations

import functools
import math
import tempfile

import torch

from hdmap.features.cache import FeatureCache
from hdmap.run.config import merge, validate
from hdmap.data.domain import load_domain
from hdmap.run.checkpoints import save_checkpoint
from hdmap.run.pipeline import fit_and_score
from hdmap.tune.spaces import trial_overrides


@functools.lru_cache(maxsize=4)
def _domain(root: str, domain: str, split_path: str, tune_fraction: float, split_seed: int, condition_csv,
            condition_csv_partial: bool = False, ignore_other_files: bool = False):
    return load_domain(root, domain, split_path, tune_fraction, split_seed, condition_csv,
                       condition_csv_partial=condition_csv_partial, ignore_other_files=ignore_other_files)


def full_config(base_config: dict, trial_config: dict) -> dict:
    return validate(merge(base_config, trial_overrides(trial_config)))


def trial_report(metrics: dict, metric: str) -> dict:
    """What a trial reports to Tune: the objective with its standard error and every tune metric."""
    tune = metrics["tune"]
    objective = tune[metric]
    return {"objective": objective if objective is not None else -math.inf, "objective_se": tune["se"][metric],
            "tune_accuracy": tune["accuracy"], "tune_auroc": tune["auroc"], "tune_accuracy_cv": tune["accuracy_cv"]}


def repeat_seeds(config: dict, repeats: int) -> list[int]:
    """Reference/coreset seeds of a trial: the config's own seed first, then the next ones."""
    return [config["model"]["seed"] + r for r in range(max(1, repeats))]


def fit_over_seeds(config: dict, data, cache: FeatureCache, metric: str, repeats: int = 1):
    """(module and metrics of the config's own seed, report) where the report's objective is the mean over
    `repeats` reference/coreset seeds (with each seed's objective and their sd when repeats > 1)."""
    module, metrics, reports = None, None, []
    for seed in repeat_seeds(config, repeats):
        fitted, _, seeded_metrics = fit_and_score(merge(config, {"model": {"seed": seed}}), data, cache,
                                                  tune_only=True)
        reports.append(trial_report(seeded_metrics, metric))
        if module is None:
            module, metrics = fitted, seeded_metrics
    report = dict(reports[0])
    if len(reports) > 1:
        per_seed = [r["objective"] for r in reports]
        report.update({"objective": float(sum(per_seed) / len(per_seed)), "objective_per_seed": per_seed,
                       "objective_sd_seeds": float(torch.tensor(per_seed).std().item())})
    metrics["objective"] = {"metric": metric, "repeats": len(reports), **report}
    return module, metrics, report


def patchcore_trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str,
                        cache_dir: str | None, cache_enabled: bool = True, threads: int = 1,
                        repeats: int = 1) -> None:
    """Fit (gated) PatchCore for one trial with the function `hdmap fit-eval` uses; report the objective (the mean
    over `repeats` reference/coreset seeds), its standard error, every tune metric and a checkpoint of the model
    with the config's own seed (the one `hdmap eval` reloads), with the trial's own metrics beside it."""
    from ray import tune

    torch.set_num_threads(max(1, threads))
    config = full_config(base_config, trial_config)
    cache = FeatureCache(cache_dir, enabled=cache_enabled, progress=False)
    data = _domain(**data_args)
    module, metrics, report = fit_over_seeds(config, data, cache, metric, repeats)
    report.update({"gate_accuracy": metrics["gate"]["accuracy"], "features_s": metrics["timing_s"]["features"],
                   "fit_s": metrics["timing_s"]["fit"], "predict_s": metrics["timing_s"]["predict"],
                   "feature_cache_hits": cache.hits, "repeats": metrics["objective"]["repeats"]})
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(folder, module, config, data, metrics)
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def feclip_trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str,
                     cache_dir: str | None = None, cache_enabled: bool = True, threads: int = 1,
                     repeats: int = 1) -> None:
    """Train FE-CLIP adapters on band anomalies of this domain's train normals; after every epoch score the
    tune maps with `score_feclip` (the scorer of fit-eval and eval, few-shot memory included) and report
    (so ASHA can stop weak trials) with a checkpoint."""
    import lightning as L
    import numpy as np
    from ray import tune

    from hdmap.evaluation.protocol import tune_metrics
    from hdmap.run.feclip_hdmap import fit_feclip, score_feclip

    torch.set_num_threads(max(1, threads))
    config = full_config(base_config, trial_config)
    data = _domain(**data_args)
    tune_idx = np.asarray(data.split.tune)

    def report(module, epoch: int) -> None:
        scored = score_feclip(module, config, data, tune_idx, during_fit=epoch > 0)
        values = tune_metrics(scored.scores, data.test_labels[tune_idx], [data.test_conditions[i] for i in tune_idx])
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(folder, module, config, data, {"tune": values, "notes": scored.notes})
            tune.report({**trial_report({"tune": values}, metric), "epoch": epoch},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    class ReportEachEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            report(module, trainer.current_epoch + 1)

    module = fit_feclip(config, data, progress=False, callbacks=[ReportEachEpoch()])
    if config["train"]["source"] != "hdmap_bands":  # nothing trained: one report of the loaded/untrained adapters
        report(module, 0)


TRAINABLES = {"patchcore": patchcore_trainable, "gated_patchcore": patchcore_trainable, "feclip": feclip_trainable}
ITERATIVE = {"feclip"}  # report every epoch: the runner adds ASHA
