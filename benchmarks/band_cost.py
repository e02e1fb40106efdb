"""What the band kind costs at the user's size: fit on 1000 train maps and score 2000 test maps (synthetic domain C,
31 x 95), for the defaults and the costliest settings (both directions, per-condition statistics, four run lengths).
No backbone: the numbers are the whole of `hdmap fit-eval --model band` apart from reading the TIFFs.

    python benchmarks/band_cost.py [--threads 1] [--repeats 3] [--out benchmarks/results/band_cost.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hdmap.config import plain
from hdmap.data.synth import SynthConfig, generate_domain
from hdmap.evaluation.results_file import markdown_table, write_results
from hdmap.models.band import BandConfig
from hdmap.models.lightning_band import BandModel

SETTINGS = {"defaults": BandConfig(),
            "costliest": BandConfig(direction="both", per_condition=True, runs=(1.0, 0.5, 0.25, 0.1),
                                    centre_scale="median_mad", image_score="top")}


def seconds(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timings per cell; the fastest is reported")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "band_cost.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = generate_domain("C", SynthConfig(n_train=1000, n_test=1000, seed=0, domains="C"))  # 1000 good + 1000 fault
    train = np.stack(data["train"])
    test = np.stack(data["good"] + data["fault"])
    rows = []
    for name, config in SETTINGS.items():
        model = BandModel(plain(config), train.shape[1:])
        fit = seconds(lambda: model.fit(train), args.repeats)
        score = seconds(lambda: model.score(test), args.repeats)
        rows.append({"settings": name, "train maps": len(train), "test maps": len(test), "fit s": f"{fit:.2f}",
                     "score s": f"{score:.2f}", "test maps / s": f"{len(test) / score:.0f}"})
    lines = ["# Band kind: fit and score cost at the user's size", "",
             f"- command: `python benchmarks/band_cost.py --threads {args.threads} --repeats {args.repeats}`",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {args.threads} thread(s); the fastest of {args.repeats} runs",
             f"- generated: {time.strftime('%Y-%m-%d %H:%M')} by the script above; not edited by hand",
             f"- costliest: `{plain(SETTINGS['costliest'])}`", ""]
    lines += markdown_table(rows, list(rows[0]))
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
