"""What a default fit costs as the train maps grow: `hdmap fit-eval`'s seconds (metrics.json timing_s) against the
number of train maps, for the default bank (composable greedy, a bank size in patches) and for exact greedy over a
10 % coreset (the defaults before 2026-12-02), with the growth exponent of fit + predict.

    python benchmarks/fit_cost.py [--sizes 50 100 200 400 1000] [--exact-max 400] [--large 1000]
        [--work DIR] [--out benchmarks/results/fit_cost.md]

Synthetic domain C (seeded), 100 good + 100 fault test maps for every size (so predict reflects the bank, not the
test set), offline EfficientNet-Lite0, the defaults otherwise; every size has its own data and its features are
extracted once, by the default's run (its `features` column is a cold cache; exact greedy's reads that cache).
Exact greedy runs up to `--exact-max` train maps (at 1000 its
fit takes hours here). `--large N`: also a set of N train maps at 300 x 300 px (2304 patches a map, like a real-image
set) with the default bank. The exponent is the least-squares slope of log seconds against log train maps from 100
maps up. Runs on whatever torch finds (the CPU here; the GPU on a GPU machine).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SETTINGS = {"default (composable greedy, bank size in patches)": [],
            "exact greedy, 10 % coreset (before 2026-12-02)": ["model.coreset_method=greedy", "model.bank_size=null",
                                                               "model.coreset_ratio=0.1", "model.projection_dim=128"]}
TEST_PER_CLASS = 100


def synthetic_root(work: Path, n_train: int, shape: tuple[int, int] = (31, 95)) -> str:
    from hdmap.data.synth import SynthConfig, write_dataset

    root = work / f"C_train{n_train}_{shape[0]}x{shape[1]}"
    if not (root / "domain_C").is_dir():
        write_dataset(root, SynthConfig(n_train=n_train, n_test=TEST_PER_CLASS, seed=0, domains="C", shape=shape))
    return str(root)


def run(root: str, sets: list[str], cache_dir: str) -> dict:
    from hdmap.jobs.fit_eval import DataOptions, fit_eval, resolve_config

    config = resolve_config(root, None, None, sets, "tf_efficientnet_lite0")
    with tempfile.TemporaryDirectory() as out:
        metrics = fit_eval(config, DataOptions(root, "C"), out, cache_dir=cache_dir, progress=True)
    return {"features s": metrics["timing_s"]["features"], "fit s": metrics["timing_s"]["fit"],
            "predict s": metrics["timing_s"]["predict"], "holdout AUROC %": 100 * metrics["holdout"]["auroc"],
            "bank": bank_members(metrics)}


def bank_members(metrics: dict) -> str:
    model = metrics["config"]["model"]
    return str(model["bank_size"]) if model.get("bank_size") else f"{model['coreset_ratio']:.0%} of the patches"


def exponent(rows: list[dict], key) -> float | None:
    points = [(math.log(r["train maps"]), math.log(key(r))) for r in rows if r["train maps"] >= 100 and key(r) > 0]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400, 1000])
    p.add_argument("--exact-max", type=int, default=400, help="largest train size exact greedy runs on")
    p.add_argument("--large", type=int, default=1000, help="train maps of the 300 x 300 px set (0: none)")
    p.add_argument("--work", help="folder for the synthetic sets and their feature cache (default: a temp folder)")
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    from hdmap.evaluation.results_file import markdown_table, stamp, write_results

    work = Path(args.work or tempfile.mkdtemp(prefix="hdmap_fit_cost_"))
    cache_dir = str(work / "cache")
    tables, summary = [], []
    cold_features: dict[int, float] = {}  # train maps -> features seconds of the first (cold-cache) run of that size
    for name, sets in SETTINGS.items():
        rows = []
        for n_train in args.sizes:
            if "exact" in name and n_train > args.exact_max:
                continue
            row = {"setting": name, "train maps": n_train, **run(synthetic_root(work, n_train), sets, cache_dir)}
            row["fit + predict s"] = row["fit s"] + row["predict s"]
            cold = cold_features.setdefault(n_train, row["features s"])
            row["(fit + predict) / cold features"] = f"{row['fit + predict s'] / cold:.2f}"
            print(row, flush=True)
            rows.append(row)
        tables += rows
        fit_predict = exponent(rows, lambda r: r["fit + predict s"])
        fit_only = exponent(rows, lambda r: r["fit s"])
        summary.append(f"- {name}: growth exponent of fit + predict "
                       f"{'n/a' if fit_predict is None else f'{fit_predict:.2f}'}, of fit "
                       f"{'n/a' if fit_only is None else f'{fit_only:.2f}'} (train maps "
                       f"{min(r['train maps'] for r in rows if r['train maps'] >= 100)}-"
                       f"{max(r['train maps'] for r in rows)})")
    if args.large:
        row = {"setting": "default, 300 x 300 px maps", "train maps": args.large,
               **run(synthetic_root(work, args.large, (300, 300)), [], cache_dir)}
        row["fit + predict s"] = row["fit s"] + row["predict s"]
        row["(fit + predict) / cold features"] = f"{row['fit + predict s'] / row['features s']:.2f}"
        tables.append(row)
        summary.append(f"- 300 x 300 px set, {args.large} train maps: features + fit "
                       f"{(row['features s'] + row['fit s']) / 60:.1f} min, predict {row['predict s']:.0f} s")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, torch threads {torch.get_num_threads()}"
    lines = ["# What a default fit costs as the train maps grow", ""]
    lines += stamp(str(work), "`tf_efficientnet_lite0` (taps [2, 3]), default settings", True)
    lines += [f"- device: {device}; synthetic domain C, {2 * TEST_PER_CLASS} test maps for every size; the features "
              f"column of the default's rows is a cold cache, exact greedy's rows read it (their ratio divides by the "
              f"default's cold features of the same size)", ""]
    lines += summary + [""]
    lines += markdown_table(tables, ["setting", "train maps", "bank", "features s", "fit s", "predict s",
                                     "fit + predict s", "(fit + predict) / cold features", "holdout AUROC %"])
    write_results(args.out, lines)  # printed too
    return 0


if __name__ == "__main__":
    sys.exit(main())
