"""How much does the reference draw and coreset seed move a trial's objective, and does averaging over seeds
(`hdmap tune --repeats N`) change which trial wins? Re-runs the finished trials of a search on the trial path
(tune maps only) with model seeds 0..N-1 and compares the ranking by seed 0 (what a search with --repeats 1
sees) with the ranking by the mean over seeds.

    python experiments/repeats_noise.py --run runs/tune/<experiment> [--repeats 3] [--top 8]
Writes experiments/results/repeats_noise.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm import tqdm

from hdmap.evaluation.results_file import stamp, write_results
from hdmap.features.cache import FeatureCache
from hdmap.config import merge
from hdmap.data.domain import load_domain
from hdmap.kinds.registry import fit_and_score
from hdmap.run.record import tune_values
from hdmap.tune.trainables import full_config

RESULTS = Path(__file__).resolve().parent / "results"


def finished_trials(run: Path) -> list[dict]:
    """(trial id, trial config, reported objective) of every finished trial, best first."""
    out = []
    for result in run.glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if lines and "objective" in lines[-1]:
            out.append({"trial": lines[-1]["trial_id"], "config": lines[-1]["config"],
                        "reported": lines[-1]["objective"]})
    return sorted(out, key=lambda t: -t["reported"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished search folder (runs/tune/<experiment>)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top", type=int, default=8, help="the best trials by the search's own objective")
    p.add_argument("--cache-dir")
    p.add_argument("--out", default=str(RESULTS / "repeats_noise.md"))
    args = p.parse_args(argv)
    run = Path(args.run)
    record = json.loads((run / "hdmap_search.json").read_text())
    metric, base = record["metric"], record["base_config"]
    options = record["options"]
    data = load_domain(record["data_root"], options["domain"], run / "split.json")
    cache = FeatureCache(args.cache_dir, progress=False)
    torch.set_num_threads(max(1, int(options["cpus_per_trial"])))  # the trials' own count: sums round by it
    trials = finished_trials(run)[: args.top]
    rows = []
    for trial in tqdm(trials, desc="trials"):
        config = full_config(base, trial["config"])
        per_seed = []
        for seed in range(args.repeats):
            seeded = merge(config, {"model": {"seed": seed}})
            per_seed.append(tune_values(fit_and_score(seeded, data, cache, tune_only=True)[2]["tune"], metric)["objective"])
        rows.append({"trial": trial["trial"], "seeds": per_seed, "mean": float(np.mean(per_seed)),
                     "sd": float(np.std(per_seed, ddof=1)), "shots": config["model"]["shots"]})
    first = np.array([r["seeds"][0] for r in rows])
    mean = np.array([r["mean"] for r in rows])
    winners = [int(np.argmax([r["seeds"][s] for r in rows])) for s in range(args.repeats)]
    rho = spearmanr(first, mean).statistic if len(rows) > 2 else float("nan")
    lines = [f"# Reference and coreset seed noise of a search's trials ({metric})", ""]
    lines += stamp(record["data_root"], f"the search's own (`{base['backbone']['name']}`)", "synthetic" in
                   record["data_root"] or "donewhen" in record["data_root"])
    lines += [f"- search: `{run.name}` ({len(finished_trials(run))} finished trials; the best {len(rows)} by its "
              f"own objective re-run with model seeds 0..{args.repeats - 1} on the trial path, tune maps only, "
              f"{torch.get_num_threads()} torch thread(s) as in the trials; seed 0 is the search's own run)", "",
              "| trial | shots/cond | " + " | ".join(f"seed {s} %" for s in range(args.repeats)) +
              " | mean % | sd (points) |", "|" + "---|" * (4 + args.repeats)]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['shots'] if r['shots'] is not None else 'all'} | " +
                     " | ".join(f"{100 * v:.1f}" for v in r["seeds"]) + f" | {100 * r['mean']:.1f} | "
                     f"{100 * r['sd']:.2f} |")
    lines += ["", f"- mean sd over seeds of one trial: {100 * np.mean([r['sd'] for r in rows]):.2f} points; sd between "
                  f"trials (seed 0): {100 * np.std(first, ddof=1):.2f} points",
              f"- Spearman correlation of the seed-0 ranking with the mean-of-{args.repeats} ranking: {rho:.2f}",
              f"- winner by seed: {', '.join(rows[w]['trial'] for w in winners)}; winner by the mean: "
              f"{rows[int(np.argmax(mean))]['trial']}"]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
