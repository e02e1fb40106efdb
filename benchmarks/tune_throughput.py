"""Trials per hour of the same search (same space, seed, trials) with the feature cache and without it.

    python benchmarks/tune_throughput.py [--num-samples 8] [--space search_spaces/hdmap_patchcore_quick.yaml]
Prints the table and writes it, stamped, to benchmarks/results/tune_throughput.md (`--out`).
Three runs: cache on starting empty (its first trials pay for extraction, like a first search), cache on
again (warm: what every later trial of a long search sees), cache off (every trial re-runs the backbone and
the greedy coreset). "other" is the trial slot time not spent extracting, fitting or scoring (Ray, worker
start, reading maps, checkpoints), estimated as wall x concurrency / trials minus the three.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from hdmap.tune.runner import SPACES_DIR, SearchOptions, run_search


def timed_search(cache_dir: str, storage: str, name: str, no_cache: bool, args,
                 data_root: str | None = None) -> tuple[float, dict]:
    options = SearchOptions(data_root=data_root, space=args.space, num_samples=args.num_samples,
                            max_concurrent=args.max_concurrent,
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
    p.add_argument("--space", default=str(SPACES_DIR / "hdmap_patchcore_quick.yaml"))
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "tune_throughput.md"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, no_cache in (("on, empty at start", False), ("on, warm (same search again)", False),
                                ("off", True)):
            name = label.split(",")[0] + str(len(rows))
            seconds, summary = timed_search(f"{folder}/cache", f"{folder}/runs", name, no_cache, args)
            rows.append((label, seconds, summary))
        from hdmap.data.synthetic_default import HARD_COLD, ensure_synthetic

        hard = str(ensure_synthetic(HARD_COLD))  # faint cold faults: the search has something to find
        seconds, summary = timed_search(f"{folder}/cache_hard", f"{folder}/runs", "hard", False, args, hard)
        rows.append(("hard-cold set, on, empty at start", seconds, summary))
    lines = table(rows, args)
    print("\n" + "\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(stamp(args) + [""] + lines) + "\n")
    print(f"written: {args.out}")


def stamp(args) -> list[str]:
    from hdmap.data.synthetic_default import embedded_root
    from hdmap.evaluation.results_file import stamp as results_stamp

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (["# Search throughput with and without the feature cache", ""]
            + results_stamp(str(embedded_root()), "per trial, drawn from the search space", True)
            + [f"- machine: {os.cpu_count()} CPU cores, {device}, {platform.platform()}"])


def table(rows, args) -> list[str]:
    lines = [f"search: `{Path(args.space).name}`, {args.num_samples} trials, seed {args.seed}, "
             f"{args.max_concurrent} concurrent trials of 1 CPU each", "",
             "| feature cache | wall s | trials/hour | best tune objective | mean per trial: features s | fit s "
             "| predict s | other s (Ray, worker start, data, checkpoint) |", "|---|---|---|---|---|---|---|---|"]
    for label, seconds, summary in rows:
        best = summary["best"]["tune_objective"] if summary["best"] else float("nan")
        per = summary.get("mean_trial_seconds", {})
        work = [per.get(k, float("nan")) for k in ("features_s", "fit_s", "predict_s")]
        other = seconds * args.max_concurrent / args.num_samples - sum(work)  # slot time not spent in the three
        lines.append(f"| {label} | {seconds:.0f} | {3600 * args.num_samples / seconds:.0f} | {best:.3f} | "
                     f"{work[0]:.1f} | {work[1]:.1f} | {work[2]:.1f} | {other:.1f} |")
    lines += ["", f"Trials per hour against re-extracting (cache off): cache empty at start "
                  f"{rows[2][1] / rows[0][1]:.1f}x, cache warm {rows[2][1] / rows[1][1]:.1f}x. The first three rows "
                  f"search the embedded data; the last the hard-cold synthetic set (domain C, fault contrast "
                  f"x0.5, seed 1)."]
    return lines


if __name__ == "__main__":
    main()
