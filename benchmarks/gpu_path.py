"""The GPU path at full data size: `hdmap fit-eval` and a 4-trial search on synthetic domain C (1000 train,
1000 good + 1000 faulty test maps) with DINOv2 ViT-S/14 (randomly initialised unless --weights names a file or
`hub`), printing seconds per stage (features, coreset, kNN, host<->device copies) and peak GPU memory.

    python benchmarks/gpu_path.py [--weights hub|none|FILE] [--image-size 448] [--out FILE.md]
On a machine without CUDA it says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

SPACE = """
model_name: gated_patchcore
metric: accuracy_cv
fixed:
  backbone: {{name: dinov2_vits14, weights: {weights}, taps: [8, 11]}}
  image_size: {image_size}
params:
  model.bank_mode: {{choice: [mixed, gated]}}
  model.bank_size: {{choice: [2500, 10000]}}
  model.image_score: {{choice: [max, top]}}
"""


class StageClock:
    """Seconds spent in named functions (CUDA synchronised around each call), patched in for one run."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._patches: list = []

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            torch.cuda.synchronize()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                torch.cuda.synchronize()
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        setattr(owner, name, timed)
        self._patches.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)


@contextmanager
def copies_profiled(result: dict):
    """Host<->device copy time and count (CUDA memcpy events of the torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        yield
    events = [e for e in prof.key_averages() if "Memcpy HtoD" in e.key or "Memcpy DtoH" in e.key]
    result["copies"] = sum(e.count for e in events)
    result["copy_s"] = sum(getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0)) for e in events) / 1e6


def timed_fit_eval(root: str, out: Path, weights: str, image_size: int, cache: str) -> dict:
    from hdmap.features.cache import FeatureCache
    from hdmap.jobs.fit_eval import DataOptions, fit_eval
    from hdmap.kinds.registry import default_config, validate
    from hdmap.config import merge
    from hdmap.models import memory_bank

    config = validate(merge(default_config(real_data=True), {"backbone": {"weights": weights},
                                                             "image_size": image_size}))
    clock = StageClock()
    clock.wrap(FeatureCache, "_extract", "features")
    clock.wrap(memory_bank, "greedy_coreset", "coreset")
    clock.wrap(memory_bank.KnnIndex, "search", "knn")
    row: dict = {"run": "fit-eval"}
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        with copies_profiled(row):
            metrics = fit_eval(config, DataOptions(root), out, cache_dir=cache, progress=False)
    finally:
        clock.restore()
    row.update(wall_s=time.perf_counter() - start, **{f"{k}_s": v for k, v in clock.seconds.items()},
               peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30, devices=metrics["devices"],
               holdout_auroc=metrics["holdout"]["auroc"])
    return row


def timed_search(root: str, storage: str, weights: str, image_size: int, cache: str) -> dict:
    from hdmap.tune.runner import SearchOptions, run_search

    space = Path(storage) / "space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(SPACE.format(weights=weights, image_size=image_size))
    start = time.perf_counter()
    summary = run_search(SearchOptions(data_root=root, space=str(space), num_samples=4, max_concurrent=4,
                                       storage=storage, name="gpu_path", cache_dir=cache, verbose=0))
    per = summary.get("mean_trial_seconds", {})
    return {"run": "search, 4 trials (auto: 1/4 GPU each)", "wall_s": time.perf_counter() - start,
            **{k: per.get(k) for k in ("features_s", "fit_s", "predict_s")}, "failed": summary["n_failed"],
            "placement": summary.get("placement")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="none", help="DINOv2 weights: none (random init), hub, or a state-dict file")
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu_path.py: no CUDA GPU visible to torch on this machine; run it on a GPU machine")
        return 0
    from hdmap.data.synth import SynthConfig, write_dataset
    from hdmap.evaluation.results_file import markdown_table, stamp, write_results

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        write_dataset(root, SynthConfig(n_train=1000, n_test=1000, seed=0, domains="C"))
        cache = str(Path(folder) / "cache")
        rows = [timed_fit_eval(str(root), Path(folder) / "fit_eval", args.weights, args.image_size, cache),
                timed_search(str(root), str(Path(folder) / "runs"), args.weights, args.image_size, cache)]
        columns = ["run", "wall_s", "features_s", "coreset_s", "knn_s", "copies", "copy_s", "fit_s", "predict_s",
                   "peak_gpu_gib", "failed"]
        lines = (["# The GPU path at full data size", ""]
                 + stamp(str(root), f"dinov2_vits14 (weights {args.weights}), {args.image_size} px", True)
                 + [f"- GPU: {torch.cuda.get_device_name(0)}", ""] + markdown_table(rows, columns)
                 + ["", f"fit-eval devices: {rows[0]['devices']}; search placement: {rows[1]['placement']}"])
    if args.out:
        write_results(args.out, lines)  # printed too
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
