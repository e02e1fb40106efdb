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
from hdmap.run.domain_data import load_domain
from hdmap.run.checkpoints import save_checkpoint
from hdmap.run.pipeline import fit_and_score
from hdmap.tune.spaces import trial_overrides


@functools.lru_cache(maxsize=4)
def _domain(root: str, domain: str, split_path: str, tune_fraction: float, split_seed: int, condition_csv):
    return load_domain(root, domain, split_path, tune_fraction, split_seed, condition_csv)


def full_config(base_config: dict, trial_config: dict) -> dict:
    return validate(merge(base_config, trial_overrides(trial_config)))


def patchcore_trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str,
                        cache_dir: str | None, cache_enabled: bool = True, threads: int = 1) -> None:
    """Fit (gated) PatchCore for one trial with the function `hdmap fit-eval` uses; report
    {'objective', 'tune_accuracy', 'tune_auroc', ...} and a checkpoint (with the trial's own metrics beside it)."""
    from ray import tune

    torch.set_num_threads(max(1, threads))
    config = full_config(base_config, trial_config)
    data = _domain(**data_args)
    cache = FeatureCache(cache_dir, enabled=cache_enabled, progress=False)
    module, _, metrics = fit_and_score(config, data, cache, tune_only=True)
    objective = metrics["tune"][metric]
    report = {"objective": objective if objective is not None else -math.inf,
              "tune_accuracy": metrics["tune"]["accuracy"], "tune_auroc": metrics["tune"]["auroc"],
              "gate_accuracy": metrics["gate"]["accuracy"], "features_s": metrics["timing_s"]["features"],
              "fit_s": metrics["timing_s"]["fit"], "predict_s": metrics["timing_s"]["predict"],
              "feature_cache_hits": cache.hits}
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(folder, module, config, data, metrics)
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def feclip_trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str,
                     cache_dir: str | None = None, cache_enabled: bool = True, threads: int = 1) -> None:
    """Train FE-CLIP adapters on band anomalies of this domain's train normals; after every epoch score the
    tune maps with `score_feclip` (the scorer of fit-eval and eval, few-shot memory included) and report
    (so ASHA can stop weak trials) with a checkpoint."""
    import lightning as L
    import numpy as np
    from ray import tune

    from hdmap.evaluation.metrics import tune_metrics
    from hdmap.run.feclip_hdmap import fit_feclip, score_feclip

    torch.set_num_threads(max(1, threads))
    config = full_config(base_config, trial_config)
    data = _domain(**data_args)
    tune_idx = np.asarray(data.split.tune)

    def report(module, epoch: int) -> None:
        scored = score_feclip(module, config, data, tune_idx, during_fit=epoch > 0)
        values = tune_metrics(scored.scores, data.test_labels[tune_idx])
        objective = values[metric] if values[metric] is not None else -math.inf
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(folder, module, config, data, {"tune": values, "notes": scored.notes})
            tune.report({"objective": objective, "tune_accuracy": values["accuracy"], "tune_auroc": values["auroc"],
                         "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(folder))

    class ReportEachEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            report(module, trainer.current_epoch + 1)

    module = fit_feclip(config, data, progress=False, callbacks=[ReportEachEpoch()])
    if config["train"]["source"] != "hdmap_bands":  # nothing trained: one report of the loaded/untrained adapters
        report(module, 0)


TRAINABLES = {"patchcore": patchcore_trainable, "gated_patchcore": patchcore_trainable, "feclip": feclip_trainable}
ITERATIVE = {"feclip"}  # report every epoch: the runner adds ASHA
