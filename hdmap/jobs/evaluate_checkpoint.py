"""Reload a checkpoint and score it with the same function its run used; holdout with the tune threshold.

Works for every checkpoint hdmap writes: PatchCore, band and FE-CLIP runs of `hdmap fit-eval` and of
the search (their own split, conditions and data checks), and FE-CLIP adapters of experiments/feclip_benchmark.py
(no HDMAP record: scored zero-shot on `--data-root`, with a new split saved under `out`)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from hdmap.jobs.checkpoints import checkpoint_file, load_checkpoint_data, read_checkpoint
from hdmap.config import merge
from hdmap.kinds.registry import default_config, score_saved, upgraded
from hdmap.data.domain import load_domain
from hdmap.jobs.run_files import write_run_outputs


def adapters_config(checkpoint: dict, path: Path) -> dict:
    """Run config of FE-CLIP adapters saved without an HDMAP record (their settings are the module's hparams)."""
    hparams = checkpoint.get("hyper_parameters", {})
    if "model" not in hparams:
        raise ValueError(f"{path}: neither an hdmap run checkpoint nor FE-CLIP adapters (no hyper-parameters)")
    config = merge(default_config(model_name="feclip"), {"feclip": hparams["model"]})
    vision = config["feclip"].get("clip_kwargs", {}).get("vision_cfg", {})
    config["image_size"] = vision.get("image_size", config["image_size"])  # the tower's own input size
    return config


@contextmanager
def same_threads(threads: int | None):
    """Score with the torch thread count the run was fitted and scored with: matrix sums on a CPU round
    differently with another count, enough to move a threshold (a hard set's tune accuracy_cv 81.7 % with 1
    thread, 80.3 % with 2)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate_checkpoint(path: str | Path, out: str | Path | None = None, data_root: str | None = None,
                        cache_dir: str | None = None, command: str | None = None, domain: str = "C",
                        ignore_other_files: bool = False, notes: list[str] = ()) -> dict:
    """metrics.json dict of the checkpoint on its holdout split (written under `out` when given)."""
    path = checkpoint_file(path)
    checkpoint = read_checkpoint(path)
    extra = checkpoint.get("hdmap", {})
    if extra:
        config, data = upgraded(extra["config"]), load_checkpoint_data(extra, data_root, ignore_other_files)
    else:
        if data_root is None:
            raise ValueError(f"{path} holds FE-CLIP adapters without an HDMAP record (e.g. from "
                             f"feclip_benchmark.py): pass --data-root ROOT (and --domain) to score them zero-shot")
        config = adapters_config(checkpoint, path)
        data = load_domain(data_root, domain, Path(out) / "split.json" if out else None,
                           config["split"]["tune_fraction"], config["split"]["seed"],
                           ignore_other_files=ignore_other_files)
    with same_threads(extra.get("threads")):
        outputs, metrics = score_saved(path, config, data, cache_dir, progress=out is not None)
    metrics.setdefault("devices", {})["cpu_threads"] = extra.get("threads") or torch.get_num_threads()
    metrics["checkpoint"] = str(path)
    metrics["notes"] = list(notes) + metrics.get("notes", [])
    if out is not None:
        write_run_outputs(out, metrics, data, outputs, command)
    return metrics
