"""The GPU path at full data size, measured: `hdmap fit-eval` for the defaults and for the most expensive setting of
the full space on synthetic domain C (1000 train, 1000 good + 1000 faulty test maps) with DINOv2 ViT-S/14 (random
weights unless --weights names a file or `hub`), then a small search, cold and warm.

    python benchmarks/gpu_path.py [--weights hub|none|FILE] [--out FILE.md] [--no-search] [--dry-run]

What each figure is:
- per-stage seconds (features, coreset, kNN) from a wall clock around each stage, the GPU synchronised before and
  after; no profiler runs in these passes (a separate, optional `--profile` pass counts host<->device copies).
- each stage's bound: its FLOPs (counted by torch's FlopCounterMode on the backbone; 2 Q M D for an exact kNN) over
  this GPU's measured fp32 matrix-product rate, or its bytes (the greedy pick loop reads the projected candidates once
  a pick) over this GPU's measured device-memory copy bandwidth; `x bound` is measured / bound.
- peak memory: torch's peak reserved memory plus faiss's own (0 with torch kNN); the CUDA context comes on top.
- cold: empty feature cache and coreset store; warm: both filled (a trial whose features another trial extracted).
- the search (needs Ray; skipped where Ray is not installed): Ray start-up, the trials, and the winner's holdout
  evaluation timed apart, per-trial peak memory from summary.json, cold and warm.
- the 64-trial estimate: from the measured cold fit-eval seconds and GPU-busy seconds of the two settings, and the
  trials that fit the GPU's memory at once (at most 8); labelled as an estimate.

The fit part imports neither Ray, Optuna, open_clip nor faiss (it runs on a machine with torch, Lightning, timm and
tifffile only). `--dry-run` runs every step on tiny data on a CPU (a check of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

# the most expensive PatchCore setting of search_spaces/hdmap_patchcore.yaml: the largest input as a square (518 px
# bilinear: 37 x 37 = 1369 patches a map; aspect keeps 31 x 95 and gives 444), the earliest tap pair, the largest
# bank, all of train, two banks plus calibration, the widest context, re-weighting, band fusion
MOST_EXPENSIVE = {"image_size": 518, "resize": "bilinear", "backbone": {"taps": [6, 11]},
                  "model": {"shots": None, "bank_mode": "soft", "bank_size": 20000, "context_ks": [0, 2, 4],
                            "image_score": "max", "reweight_k": 9, "band_weight": 4.0, "fusion": "max",
                            "input_norm": "percentile"}}
SPACE = """
model_name: hdmap_patchcore
metric: accuracy_cv
fixed:
  backbone: {{name: dinov2_vits14, weights: {weights}, taps: [8, 11]{kwargs}}}
  image_size: {image_size}
params:
  model.bank_mode: {{choice: [mixed, gated]}}
  model.bank_size: {{choice: [{small}, {large}]}}
  model.image_score: {{choice: [max, top]}}
"""
TINY_VIT = {"model_kwargs": {"depth": 2, "embed_dim": 24, "num_heads": 2}, "taps": [0, 1]}  # --dry-run only


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StageClock:
    """Seconds (GPU synchronised around each call) and work (FLOPs or bytes) per stage, patched in for one run."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.work: dict[str, float] = {}
        self._patches: list = []

    def wrap(self, owner, name: str, stage: str, work=None) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            amount = work(*args, **kwargs) if work is not None else None  # before the call: it changes its inputs
            synchronise()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                synchronise()
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
                if amount is not None:
                    self.work[stage] = self.work.get(stage, 0.0) + amount
        setattr(owner, name, timed)
        self._patches.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)


def knn_flops(index, queries, k) -> float:
    return 2.0 * len(queries) * len(index) * index.vectors.shape[1]


def pick_bytes(order, size, progress=None) -> float:
    """Bytes the pick loop reads: the projected candidates and their norms and running minimum, once a pick."""
    picks = max(0, min(size, len(order.x)) - len(order.order))
    return float(picks) * order.x.shape[0] * (order.x.shape[1] + 3) * 4


def step_pick_bytes(step, steps, progress=None) -> float:
    """Bytes composable greedy's in-step chunk stage reads: every chunk's projected patches, norms and running
    minimum, once a step."""
    remaining = max(0, steps - len(step.order))
    return float(remaining) * step.x.shape[0] * step.x.shape[1] * (step.x.shape[2] + 3) * 4


def device_rates(device: torch.device) -> dict:
    """This device's fp32 matrix-product rate (FLOP/s) and device-memory copy bandwidth (bytes/s), measured."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    synchronise()
    start, repeats = time.perf_counter(), 10 if device.type == "cuda" else 2
    for _ in range(repeats):
        a @ b
    synchronise()
    flops = 2 * n ** 3 * repeats / (time.perf_counter() - start)
    x = torch.empty((1 << 29) if device.type == "cuda" else (1 << 24), device=device)  # 2 GiB on a GPU
    y = torch.empty_like(x)
    y.copy_(x)
    synchronise()
    start = time.perf_counter()
    for _ in range(repeats):
        y.copy_(x)
    synchronise()
    bandwidth = 2 * x.numel() * 4 * repeats / (time.perf_counter() - start)  # read + write
    del a, b, x, y
    return {"matmul_flops": flops, "bandwidth": bandwidth}


def backbone_flops(config: dict, cache, n_maps: int, device) -> float:
    """FLOPs of the backbone over `n_maps` maps, counted on one map at this setting's input size."""
    from torch.utils.flop_counter import FlopCounterMode

    from hdmap.kinds.registry import settings_of

    run = settings_of(config)
    spec = run.backbone
    transform = cache.transform_for(spec, run.image_size, run.resize, run.normalisation, device)
    import numpy as np

    x = transform.batch([np.random.rand(31, 95).astype("float32")]).to(device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        cache.backbone(spec, device)(x)
    return float(counter.get_total_flops()) * n_maps


def peak_memory_gib() -> float | None:
    if not torch.cuda.is_available():
        return None
    from hdmap.models.memory_bank import faiss_gpu_scratch_bytes

    return (torch.cuda.max_memory_reserved() + faiss_gpu_scratch_bytes()) / 2 ** 30


def timed_fit_eval(label: str, config: dict, root: str, out: Path, cache_dir: str, rates: dict,
                   n_maps: int) -> dict:
    from hdmap.features.cache import FeatureCache
    from hdmap.jobs.fit_eval import DataOptions, fit_eval
    from hdmap.models import chunk_greedy, coreset, memory_bank

    clock = StageClock()
    clock.wrap(FeatureCache, "_extract", "features")
    clock.wrap(coreset.GreedyOrder, "extend", "coreset", pick_bytes)
    clock.wrap(chunk_greedy.StepGreedy, "extend", "coreset", step_pick_bytes)
    clock.wrap(memory_bank.KnnIndex, "search", "knn", knn_flops)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    synchronise()
    start = time.perf_counter()
    try:
        metrics = fit_eval(copy.deepcopy(config), DataOptions(root), out, overwrite=True, cache_dir=cache_dir,
                           progress=False)
    finally:
        clock.restore()
    row = {"run": label, "wall_s": time.perf_counter() - start, "peak_gib": peak_memory_gib(),
           "devices": metrics["devices"], "holdout_auroc": metrics["holdout"]["auroc"]}
    for stage in ("features", "coreset", "knn"):
        row[f"{stage}_s"] = clock.seconds.get(stage, 0.0)
    device = torch.device(metrics["devices"]["banks"] or "cpu")
    if row["features_s"] > 0:
        flops = backbone_flops(config, FeatureCache(cache_dir, progress=False), n_maps, device)
        row["features_x_bound"] = row["features_s"] / (flops / rates["matmul_flops"])
    if clock.work.get("coreset"):
        row["coreset_x_bound"] = row["coreset_s"] / (clock.work["coreset"] / rates["bandwidth"])
    if clock.work.get("knn"):
        row["knn_x_bound"] = row["knn_s"] / (clock.work["knn"] / rates["matmul_flops"])
    row["gpu_busy_s"] = row["features_s"] + row["coreset_s"] + row["knn_s"]
    return row


def profiled_copies(config: dict, root: str, out: Path, cache_dir: str) -> dict:
    """A separate pass under the torch profiler: host<->device copies (count, device seconds) of a warm fit-eval."""
    from torch.profiler import ProfilerActivity, profile

    from hdmap.jobs.fit_eval import DataOptions, fit_eval

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fit_eval(copy.deepcopy(config), DataOptions(root), out, overwrite=True, cache_dir=cache_dir, progress=False)
    events = [e for e in prof.key_averages() if "Memcpy HtoD" in e.key or "Memcpy DtoH" in e.key]
    seconds = sum(getattr(e, "device_time_total", 0) for e in events) / 1e6
    return {"run": "defaults, warm, profiled", "copies": sum(e.count for e in events), "copy_s": seconds}


def timed_search(label: str, root: str, storage: str, name: str, space_text: str, cache: str, trials: int,
                 concurrent: int) -> dict:
    """One search with Ray start-up, trials and holdout timed apart."""
    import ray

    from hdmap.tune import summary as summary_module
    from hdmap.tune.runner import SearchOptions, run_search

    space = Path(storage) / "space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(space_text)
    ray.shutdown()
    start = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}})
    ray_start = time.perf_counter() - start
    holdout = [0.0]
    original = summary_module.evaluate_checkpoint

    def timed_holdout(*args, **kwargs):
        begun = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            holdout[0] += time.perf_counter() - begun

    summary_module.evaluate_checkpoint = timed_holdout
    start = time.perf_counter()
    try:
        summary = run_search(SearchOptions(data_root=root, space=str(space), num_samples=trials,
                                           max_concurrent=concurrent, storage=storage, name=name, cache_dir=cache,
                                           verbose=0))
    finally:
        summary_module.evaluate_checkpoint = original
        ray.shutdown()
    total = time.perf_counter() - start
    peak = summary.get("peak_memory_bytes")
    per = summary.get("mean_trial_seconds", {})
    return {"run": label, "ray_start_s": ray_start, "trials_s": total - holdout[0], "holdout_s": holdout[0],
            "peak_gib": peak / 2 ** 30 if peak else None, "failed": summary["n_failed"],
            **{k: per.get(k) for k in ("features_s", "fit_s", "predict_s")}, "placement": summary.get("placement")}


def estimate_64(rows: list[dict], gpu_gib: float | None) -> list[str]:
    """What 64 full-space trials would take, from the two measured settings (an estimate, said to be one)."""
    lines = ["", "## 64 trials of the full space (estimate from the rows above)", ""]
    measured = [r for r in rows if r["run"].endswith("cold")]
    if len(measured) < 2 or not gpu_gib:
        return lines + ["(needs both cold rows and a GPU)"]
    peak = max(r["peak_gib"] for r in measured) + 0.5  # + the CUDA context of each trial process
    at_once = max(1, min(8, int(0.9 * gpu_gib // peak)))
    lines += [f"Most of the full space's input settings (image size x resize x normalisation x input_norm: 108) are "
              f"new to the feature cache, so each trial is taken as a cold fit-eval at a setting between the two "
              f"measured ones. Peak memory per trial at most {peak:.1f} GiB with its CUDA context: {at_once} "
              f"trial(s) fit this {gpu_gib:.0f} GiB GPU at once (capped at 8).", "",
              "| trials at once | 64 trials, defaults-like (min) | 64 trials, most expensive (min) |", "|---|---|---|"]
    low, high = measured[0], measured[1]
    for at in sorted({1, at_once}):
        def minutes(row):  # trials overlap on the GPU only as far as its busy time leaves room
            return max(64 * row["wall_s"] / at, 64 * row["gpu_busy_s"]) / 60
        lines.append(f"| {at} | {minutes(low):.1f} | {minutes(high):.1f} |")
    lines += ["", "With k trials at once, a trial's host-side work (reading maps, Lightning, the gate, fusion) "
              "overlaps other trials' GPU work; the GPU-busy seconds (features + coreset + kNN) cannot overlap, so "
              "64 x GPU-busy is the floor. Goal: <= 15 min for 64 trials."]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="none", help="DINOv2 weights: none (random init), hub, or a state-dict file")
    p.add_argument("--out", help="also write the table to this markdown file")
    p.add_argument("--no-search", action="store_true", help="fit-eval rows only (also implied without Ray)")
    p.add_argument("--profile", action="store_true", help="add a profiled pass counting host<->device copies")
    p.add_argument("--dry-run", action="store_true", help="tiny data and model on any device: checks the script")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.dry_run:
        print("benchmarks/gpu_path.py: no CUDA GPU visible to torch on this machine; run it on a GPU machine "
              "(or --dry-run to check the script)")
        return 0
    from hdmap.config import merge
    from hdmap.data.synth import SynthConfig, write_dataset
    from hdmap.evaluation.results_file import markdown_table, stamp, write_results
    from hdmap.kinds.registry import default_config, validate

    n_train, n_test = (40, 20) if args.dry_run else (1000, 1000)
    backbone = {"weights": args.weights, **(TINY_VIT if args.dry_run else {})}
    defaults = validate(merge(default_config(real_data=True), {"backbone": backbone}))
    expensive = validate(merge(defaults, MOST_EXPENSIVE))
    if args.dry_run:  # tiny sizes: the same steps, seconds on a CPU
        defaults = validate(merge(defaults, {"image_size": 98, "model": {"bank_size": 200}}))
        expensive = validate(merge(expensive, {"image_size": 112, "backbone": {"taps": [0, 1]},
                                               "model": {"bank_size": 400}}))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rates = device_rates(device)
    n_maps = n_train + 2 * n_test
    rows, search_rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        write_dataset(root, SynthConfig(n_train=n_train, n_test=n_test, seed=0, domains="C"))
        for label, config in (("defaults", defaults), ("most expensive", expensive)):
            cache = str(Path(folder) / f"cache_{label.replace(' ', '_')}")
            for state in ("cold", "warm"):
                rows.append(timed_fit_eval(f"{label}, {state}", config, str(root), Path(folder) / "out", cache,
                                           rates, n_maps))
        if args.profile:
            rows.append(profiled_copies(defaults, str(root), Path(folder) / "out", str(Path(folder) /
                                                                                         "cache_defaults")))
        try:
            import ray  # noqa: F401
        except ImportError:
            ray = None
        if ray is not None and not args.no_search:
            size = 448 if not args.dry_run else 98
            kwargs = "" if not args.dry_run else (f", model_kwargs: {json.dumps(TINY_VIT['model_kwargs'])}")
            taps = "[8, 11]" if not args.dry_run else "[0, 1]"
            space = SPACE.format(weights=args.weights, image_size=size, kwargs=kwargs,
                                 small=2500 if not args.dry_run else 100,
                                 large=10000 if not args.dry_run else 300).replace("[8, 11]", taps)
            cache = str(Path(folder) / "search_cache")
            trials, concurrent = (8, 4) if not args.dry_run else (2, 2)
            for state in ("cold", "warm"):
                search_rows.append(timed_search(f"search, {trials} trials, {concurrent} at once, {state}",
                                                str(root), str(Path(folder) / "runs"), f"gpu_path_{state}", space,
                                                cache, trials, concurrent))
    gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2 ** 30 if torch.cuda.is_available() else None
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (dry run on the CPU)"
    lines = (["# The GPU path at full data size", ""]
             + stamp(f"synthetic domain C, {n_train} train, {n_test} + {n_test} test maps",
                     f"dinov2_vits14 (weights {args.weights})", True)
             + [f"- device: {name}; measured fp32 matrix product {rates['matmul_flops'] / 1e12:.1f} TFLOP/s, "
                f"device copy bandwidth {rates['bandwidth'] / 1e9:.0f} GB/s", ""]
             + markdown_table(rows, ["run", "wall_s", "features_s", "features_x_bound", "coreset_s", "coreset_x_bound",
                                     "knn_s", "knn_x_bound", "gpu_busy_s", "peak_gib", "holdout_auroc", "copies",
                                     "copy_s"])
             + ["", f"kNN and banks: {rows[0]['devices']}"])
    if search_rows:
        lines += ["", "## Search (Ray start-up, trials and the winner's holdout apart)", ""]
        lines += markdown_table(search_rows, ["run", "ray_start_s", "trials_s", "holdout_s", "features_s", "fit_s",
                                              "predict_s", "peak_gib", "failed"])
        lines += ["", f"placement: {search_rows[-1]['placement']}"]
    elif not args.no_search:
        lines += ["", "Search rows skipped: Ray is not installed here."]
    lines += estimate_64(rows, gpu_gib)
    if args.out:
        write_results(args.out, lines)  # printed too
    else:
        write_results(None, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
