"""Trials per hour of the same search (same space, seed, trials) with the feature cache and without it.

    python benchmarks/tune_throughput.py [--num-samples 8] [--space search_spaces/gated_patchcore_quick.yaml]
Three runs: cache on starting empty (its first trials pay for extraction, like a first search), cache on
again (warm: what every later trial of a long search sees), cache off (every trial re-runs the backbone and
the greedy coreset). "other" is the trial slot time not spent extracting, fitting or scoring (Ray, worker
start, reading maps, checkpoints), estimated as wall x concurrency / trials minus the three.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from hdmap.tune.runner import SPACES_DIR, SearchOptions, run_search


def timed_search(cache_dir: str, storage: str, name: str, no_cache: bool, args) -> tuple[float, dict]:
    options = SearchOptions(space=args.space, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                            storage=storage, name=name, cache_dir=cache_dir,
                            no_cache=no_cache, seed=args.seed, verbose=0)
    start = time.perf_counter()
    summary = run_search(options)
    return time.perf_counter() - start, summary


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", default=str(SPACES_DIR / "gated_patchcore_quick.yaml"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, no_cache in (("on, empty at start", False), ("on, warm (same search again)", False),
                                ("off", True)):
            name = label.split(",")[0] + str(len(rows))
            seconds, summary = timed_search(f"{folder}/cache", f"{folder}/runs", name, no_cache, args)
            rows.append((label, seconds, summary))
    print(f"\nsearch: {args.space}, {args.num_samples} trials, seed {args.seed}, max concurrent {args.max_concurrent}")
    print("| feature cache | wall seconds | trials/hour | best tune objective | mean per trial: features s | fit s "
          "| predict s | other s (Ray, worker start, data, checkpoint) |\n|---|---|---|---|---|---|---|---|")
    for label, seconds, summary in rows:
        best = summary["best"]["tune_objective"] if summary["best"] else float("nan")
        per = summary.get("mean_trial_seconds", {})
        work = [per.get(k, float("nan")) for k in ("features_s", "fit_s", "predict_s")]
        other = seconds * args.max_concurrent / args.num_samples - sum(work)  # slot time not spent in the three
        print(f"| {label} | {seconds:.0f} | {3600 * args.num_samples / seconds:.0f} | {best:.3f} | "
              f"{work[0]:.1f} | {work[1]:.1f} | {work[2]:.1f} | {other:.1f} |")
    print(f"throughput ratio, cache on (empty at start) / off: {rows[2][1] / rows[0][1]:.1f}x; "
          f"cache warm / off: {rows[2][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
