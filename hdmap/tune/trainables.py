"""The Ray Tune function trainable of every model kind: a trial config -> the kind's trial (the fit-eval function
on the tune maps) -> its objective and a checkpoint, reported to Tune.

Heavy state is shared: features come from the on-disk feature cache (computed once per backbone setting and
reused by every trial and worker), and the domain's maps are read once per worker process.
"""
from __future__ import annotations

import functools
import socket
import tempfile
from pathlib import Path

import torch

from hdmap.config import merge
from hdmap.data.domain import load_domain
from hdmap.features.cache import FeatureCache
from hdmap.jobs.checkpoints import save_checkpoint
from hdmap.kinds.registry import kind_of, validate
from hdmap.models.memory_bank import set_cpu_threads
from hdmap.tune.retries import earlier_error, lost_worker
from hdmap.tune.spaces import trial_overrides


@functools.lru_cache(maxsize=4)
def _domain(root: str, domain: str, split_path: str, tune_fraction: float, split_seed: int, condition_csv,
            condition_csv_partial: bool = False, ignore_other_files: bool = False):
    return load_domain(root, domain, split_path, tune_fraction, split_seed, condition_csv,
                       condition_csv_partial=condition_csv_partial, ignore_other_files=ignore_other_files)


def full_config(base_config: dict, trial_config: dict) -> dict:
    return validate(merge(base_config, trial_overrides(trial_config)))


def placement() -> dict:
    """Where this trial runs: Ray node id and host, and the device its torch sees (a trial given no GPU, or on a
    machine whose torch has no CUDA, runs on the CPU and says so)."""
    import ray

    gpu_ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", []) if ray.is_initialized() else []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    note = ""
    if gpu_ids and device == "cpu":
        note = f"Ray gave this trial GPU {','.join(map(str, gpu_ids))} but torch sees no CUDA: it ran on the CPU"
    return {"node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else "",
            "host": socket.gethostname(), "device": device, "gpu_ids": ",".join(map(str, gpu_ids)),
            "placement_note": note}


def trainable(trial_config: dict, base_config: dict, data_args: dict, metric: str, cache_dir: str | None,
              cache_enabled: bool = True, threads: int = 1, repeats: int = 1, prefetch_taps: tuple = (),
              started: float = 0.0) -> None:
    """Run the trial of the config's kind; each of its reports goes to Tune with a checkpoint of the model and the
    trial's own metrics beside it (the record `hdmap eval` and the summary read). A retry (`started`: when this
    search command began) of a trial that failed in its own code ends at once: it would only fail again."""
    from ray import tune

    trial_dir = tune.get_context().get_trial_dir() if tune.get_context() else None
    earlier = earlier_error(Path(trial_dir), since=started) if trial_dir else None
    if earlier and not lost_worker(earlier):  # the trial's own error: a second attempt would only repeat it
        raise RuntimeError(f"not retried: {earlier}")
    set_cpu_threads(threads)
    config = full_config(base_config, trial_config)
    cache = FeatureCache(cache_dir, enabled=cache_enabled, progress=True, prefetch_taps=prefetch_taps)  # lines in its log
    data = _domain(**data_args)

    where = placement()

    def report(module, metrics: dict, values: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(folder, module, config, data, {**metrics, "placement": where})
            tune.report({**values, **where}, checkpoint=tune.Checkpoint.from_directory(folder))

    if where["placement_note"]:
        print(f"[hdmap] {where['placement_note']}", flush=True)
    kind_of(config).trial(config, data, cache, metric, repeats, report)
