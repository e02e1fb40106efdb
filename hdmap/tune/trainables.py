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
    module, _, metrics = fit_and_score(config, data, cache)
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
    tune split and report (so ASHA can stop weak trials) with a checkpoint."""
    import lightning as L
    import numpy as np
    from ray import tune

    from hdmap.evaluation.metrics import auroc, best_threshold
    from hdmap.run.feclip_hdmap import MapBatchDataset, band_dataset, build_feclip, map_transform
    from hdmap.run.feclip_run import predict_feclip, train_feclip

    torch.set_num_threads(max(1, threads))
    config = full_config(base_config, trial_config)
    data = _domain(**data_args)
    train = config["train"]
    transform = map_transform(config)
    tune_idx = np.asarray(data.split.tune)
    tune_set = MapBatchDataset(data.test_maps[tune_idx], np.zeros_like(data.test_maps[tune_idx]),
                               data.test_labels[tune_idx], transform)

    class ReportEachEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            predictions = predict_feclip(module, tune_set, train["batch_size"], during_fit=True)
            scores, labels = predictions["scores"], predictions["labels"]
            values = {"accuracy": best_threshold(scores, labels)[1], "auroc": auroc(scores, labels)}
            tune_metrics = {"tune": {"accuracy": values["accuracy"], "auroc": values["auroc"]}}
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(folder, module, config, data, tune_metrics)
                tune.report({"objective": values[metric], "tune_accuracy": values["accuracy"],
                             "tune_auroc": values["auroc"], "epoch": trainer.current_epoch + 1},
                            checkpoint=tune.Checkpoint.from_directory(folder))

    module = build_feclip(config)
    torch.manual_seed(train["seed"])
    train_feclip(module, band_dataset(config, data), train["epochs"], train["batch_size"],
                 callbacks=[ReportEachEpoch()], progress=False)


TRAINABLES = {"patchcore": patchcore_trainable, "gated_patchcore": patchcore_trainable, "feclip": feclip_trainable}
ITERATIVE = {"feclip"}  # report every epoch: the runner adds ASHA
