"""Where a warm trial's predict goes: `hdmap fit-eval`'s scoring of the tune maps on cached features (what every
trial after the first pays), split into stages, for the defaults and for the old 16-shot bank.

    python benchmarks/predict_profile.py [--threads 1] [--repeats 2] [--out FILE.md]
Stages: kNN search, kNN index build, PatchCore re-weighting, band descriptor, patch embedding (pooling and
horizontal context), and the rest of Lightning's predict loop (batches, hooks, copies, conversions). Embedded
synthetic data, offline EfficientNet-Lite0.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

STAGES = [("kNN search", "hdmap.models.memory_bank", "KnnIndex", "search"),
          ("kNN index build", "hdmap.models.memory_bank", "KnnIndex", "__init__"),
          ("re-weighting", "hdmap.models.memory_bank", "MemoryBank", "_reweight"),
          ("band descriptor", "hdmap.data.condition_statistics", "ConditionStatistics", "band_channel"),
          ("patch embedding", "hdmap.models.embedding", None, "patch_embedding")]


def timed_stages(run) -> tuple[float, dict]:
    """(wall seconds of `run()`, seconds per stage), each stage timed around its function (nested calls once)."""
    import importlib

    seconds, patches = {name: 0.0 for name, *_ in STAGES}, []
    for name, module_name, owner_name, attr in STAGES:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        original = getattr(owner, attr)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_name] += time.perf_counter() - start
        setattr(owner, attr, wrapper)
        patches.append((owner, attr, original))
        if owner_name is None:  # imported by name elsewhere
            import hdmap.kinds.patchcore.model as core
            setattr(core, attr, wrapper)
            patches.append((core, attr, original))
    start = time.perf_counter()
    try:
        run()
    finally:
        for owner, attr, original in reversed(patches):
            setattr(owner, attr, original)
    return time.perf_counter() - start, seconds


def profile(config: dict, data, cache, repeats: int) -> dict:
    from hdmap.kinds.patchcore.kind import build_module
    from hdmap.kinds.patchcore import pipeline

    from hdmap.kinds.registry import settings_of

    config = settings_of(config)
    module, _, _ = pipeline.fit_and_score(build_module(config), config, data, cache, accelerator="cpu",
                                          tune_only=True)  # warms the cache and the coreset store
    _, test_grids = pipeline.cached_features(config, data, cache, module.core.condition_stats, "cpu")
    runs = [timed_stages(lambda: pipeline.score_patchcore(module, test_grids, data, "cpu", tune_only=True))
            for _ in range(repeats)]
    wall, stages = min(runs, key=lambda r: r[0])
    bank = sum(len(b) for b in module.core.banks.values())
    return {"wall": wall, "stages": stages, "bank": bank, "queries": len(data.split.tune),
            "dim": next(iter(module.core.banks.values())).features.shape[1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial gets 1 per CPU)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from hdmap.config import merge
    from hdmap.data.domain import load_domain
    from hdmap.data.synthetic_default import ensure_embedded_dataset
    from hdmap.evaluation.results_file import stamp, write_results
    from hdmap.features.cache import FeatureCache
    from hdmap.kinds.registry import default_config

    root = str(ensure_embedded_dataset())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = load_domain(root, "C", Path(folder) / "split.json")
        cache = FeatureCache(Path(folder) / "cache", progress=False)
        for label, update in (("defaults (all train, 10 % coreset, top 1 %)", {}),
                              ("16 shots/condition, max + re-weighting (the old defaults)",
                               {"model": {"shots": 16, "image_score": "max"}})):
            rows.append((label, profile(merge(default_config(), update), data, cache, args.repeats)))
    names = [name for name, *_ in STAGES]
    lines = ["# Where a warm trial's predict goes", ""] + stamp(root, "`tf_efficientnet_lite0` (taps [2, 3])", True)
    lines += [f"- torch threads: {args.threads}; best of {args.repeats} runs; tune maps only, as a trial scores", "",
              "| setting | bank x dim | tune maps | predict s | " + " | ".join(f"{n} s" for n in names)
              + " | Lightning loop and the rest s |", "|" + "---|" * (5 + len(names))]
    for label, r in rows:
        stages = r["stages"]
        rest = r["wall"] - sum(v for k, v in stages.items() if k != "re-weighting")
        lines.append(f"| {label} | {r['bank']} x {r['dim']} | {r['queries']} | {r['wall']:.2f} | "
                     + " | ".join(f"{stages[n]:.2f}" for n in names) + f" | {max(rest, 0.0):.2f} |")
    lines += ["", "Re-weighting calls the kNN search itself: its seconds are also inside the kNN column."]
    if args.out:
        write_results(args.out, lines)  # printed too
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
