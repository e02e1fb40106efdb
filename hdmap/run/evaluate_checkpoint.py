"""Reload a checkpoint, check it matches the data, score holdout with the tune threshold, write the report."""
from __future__ import annotations

import time
from pathlib import Path

from hdmap.data.splits import TestSplit
from hdmap.features.cache import FeatureCache
from hdmap.run.domain_data import load_domain
from hdmap.run.outputs import write_run_outputs
from hdmap.run.patchcore_run import metrics_of, score_with_module
from hdmap.run.checkpoints import check_data, load_checkpoint


def evaluate_checkpoint(path: str | Path, out: str | Path | None = None, data_root: str | None = None,
                        cache_dir: str | None = None, command: str | None = None) -> dict:
    """metrics.json dict of the checkpoint on its holdout split (written under `out` when given)."""
    path = Path(path) / "model.ckpt" if Path(path).is_dir() else Path(path)
    module, extra = load_checkpoint(path)
    config = extra["config"]
    root = data_root or extra["data_root"]
    if not Path(root).is_dir():
        raise FileNotFoundError(f"data root of the checkpoint not found: {root} (pass --data-root)")
    split = TestSplit(**extra["split"])
    data = load_domain(root, extra["domain"], None, split.tune_fraction, split.seed)
    check_data(extra, data)
    start = time.perf_counter()
    if config["model_name"] == "feclip":  # reload the trained adapters; no further training
        from hdmap.run.feclip_hdmap import fit_and_score_feclip

        config = {**config, "train": {**config["train"], "source": "checkpoint", "checkpoint": str(path)}}
        _, outputs, metrics = fit_and_score_feclip(config, data, progress=False)
    else:
        outputs = score_with_module(module, config, data, FeatureCache(cache_dir, progress=out is not None))
        metrics = metrics_of(config, data, outputs, module)
    metrics["timing_s"] = {"predict": time.perf_counter() - start}
    metrics["checkpoint"] = str(path)
    if out is not None:
        write_run_outputs(out, metrics, data, outputs, command)
    return metrics
