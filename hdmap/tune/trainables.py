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
from hdmap.kinds.registry import kind_of, settings_of, trial
from hdmap.models.memory_bank import set_cpu_threads
from hdmap.spread import active, spreading_in_trial
from hdmap.tune.retries import OwnErrors
from hdmap.tune.spaces import trial_overrides
from hdmap.tune.trial_results import TrialResults, config_key
from hdmap.tune.trial_devices import (TrialGpuMemoryError, assigned_gpu_ids, confine, gpu_memory_message,
                                      peak_memory, reset_peak_memory)


@functools.lru_cache(maxsize=4)
def _domain(root: str, domain: str, split_path: str, tune_fraction: float, split_seed: int, condition_csv,
            condition_csv_partial: bool = False, ignore_other_files: bool = False, allow_duplicates: bool = False):
    return load_domain(root, domain, split_path, tune_fraction, split_seed, condition_csv,
                       condition_csv_partial=condition_csv_partial, ignore_other_files=ignore_other_files,
                       allow_duplicates=allow_duplicates)


def full_config(base_config: dict, trial_config: dict) -> dict:
    """The trial's run config: the search's base settings with the trial's values (checked when it becomes the
    settings tree)."""
    return merge(base_config, trial_overrides(trial_config))


def trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str, cache_dir: str | None,
              cache_enabled: bool = True, threads: int = 1, repeats: int = 1, prefetch_taps: tuple = (),
              started: float = 0.0, errors_dir: str | None = None, gpu_share: float = 0.0,
              results_dir: str | None = None, trial_tasks: int = 0, task_cpus: float = 1.0) -> None:
    """Run the trial of the config's kind on exactly the GPUs Ray gave it; each of its reports goes to Tune with a
    checkpoint of the model and the trial's own metrics beside it (the record `hdmap eval` and the summary read).
    An error of the trial's own code is recorded in the experiment's storage (`errors_dir`), so a retry of it (one
    after `started`, when this search command began) ends at once: it would only fail again."""
    from ray import tune

    context = tune.get_context()
    trial_id = context.get_trial_id() if context else None
    errors = OwnErrors(errors_dir) if errors_dir and trial_id else None
    earlier = errors.earlier(trial_id, since=started) if errors else None
    if earlier:
        raise RuntimeError(f"not retried: {earlier}")
    where = confine(assigned_gpu_ids(), gpu_share)  # before anything in this trial touches CUDA
    try:
        with spreading_in_trial(trial_tasks, task_cpus, gpu_share):  # --trial-tasks: its fit over its bundles
            _run_trial(trial_config, base_config, data_args, metric, cache_dir, cache_enabled, threads, repeats,
                       prefetch_taps, where, TrialResults(results_dir) if results_dir and trial_id else None,
                       trial_id)
    except torch.cuda.OutOfMemoryError as error:
        message = gpu_memory_message(error, where)
        if errors:
            errors.write(trial_id, f"TrialGpuMemoryError: {message}")
        raise TrialGpuMemoryError(message) from None
    except Exception as error:
        if errors:
            errors.write(trial_id, f"{type(error).__name__}: {error}")
        raise


def _run_trial(trial_config: dict, base_config: dict, data_args: dict, metric: str, cache_dir: str | None,
               cache_enabled: bool, threads: int, repeats: int, prefetch_taps: tuple, where: dict,
               results: TrialResults | None = None, trial_id: str | None = None) -> None:
    from ray import tune

    set_cpu_threads(threads)
    config = full_config(base_config, trial_config)
    run = settings_of(config)
    kind = kind_of(run)
    key = config_key(config, metric, repeats)
    earlier = results.get(key) if results is not None and not kind.iterative else None
    if earlier is not None:  # a finished trial ran exactly this: its values, not a second fit
        print(f"[hdmap] this config was run by trial {earlier['trial_id']}: its result is reused", flush=True)
        tune.report({**earlier["values"], **where, "reused_from": earlier["trial_id"]})
        return
    cache = FeatureCache(cache_dir, enabled=cache_enabled, progress=True, prefetch_taps=prefetch_taps,
                         device="cuda" if where["device"] == "cuda" else "cpu")  # lines in its log
    data = _domain(**data_args)
    reset_peak_memory(where)

    def report(module, metrics: dict, values: dict) -> None:
        memory = peak_memory(where)
        with tempfile.TemporaryDirectory() as folder:
            spread = active()
            spread_record = {"spread": spread.summary()} if spread is not None else {}
            save_checkpoint(folder, module, run, data, {**metrics, "placement": where, "peak_memory": memory,
                                                        **spread_record})
            tune.report({**values, **where, **{f"memory_{k}": v for k, v in memory.items()}},
                        checkpoint=tune.Checkpoint.from_directory(folder))
        if results is not None and not kind.iterative:
            results.put(key, trial_id, values)

    if where["placement_note"]:
        print(f"[hdmap] {where['placement_note']}", flush=True)
    trial(run, data, cache, metric, repeats, report)
