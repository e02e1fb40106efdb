"""The Ray Tune function trainable of every model kind: a trial config -> the kind's trial (the fit-eval function
on the tune maps) -> its objective and a checkpoint, reported to Tune.

Heavy state is shared: features come from the on-disk feature cache (computed once per backbone setting and
reused by every trial and worker), and the domain's maps are read once per worker process.
"""
from __future__ import annotations

import functools
import tempfile

import torch

from hdmap.config import merge
from hdmap.data.domain import load_domain
from hdmap.features.cache import FeatureCache
from hdmap.jobs.checkpoints import save_checkpoint
from hdmap.kinds.registry import kind_of, validate
from hdmap.tune.spaces import trial_overrides


@functools.lru_cache(maxsize=4)
def _domain(root: str, domain: str, split_path: str, tune_fraction: float, split_seed: int, condition_csv,
            condition_csv_partial: bool = False, ignore_other_files: bool = False):
    return load_domain(root, domain, split_path, tune_fraction, split_seed, condition_csv,
                       condition_csv_partial=condition_csv_partial, ignore_other_files=ignore_other_files)


def full_config(base_config: dict, trial_config: dict) -> dict:
    return validate(merge(base_config, trial_overrides(trial_config)))


def trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str, cache_dir: str | None,
              cache_enabled: bool = True, threads: int = 1, repeats: int = 1) -> None:
    """Run the trial of the config's kind; each of its reports goes to Tune with a checkpoint of the model and the
    trial's own metrics beside it (the record `hdmap eval` and the summary read)."""
    from ray import tune

    torch.set_num_threads(max(1, threads))
    config = full_config(base_config, trial_config)
    cache = FeatureCache(cache_dir, enabled=cache_enabled, progress=False)
    data = _domain(**data_args)

    def report(module, metrics: dict, values: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(folder, module, config, data, metrics)
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(folder))

    kind_of(config).trial(config, data, cache, metric, repeats, report)
