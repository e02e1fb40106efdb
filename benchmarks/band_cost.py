"""What the band kind costs at the user's size: fit on 1000 train maps and score 2000 test maps (synthetic domain C,
31 x 95), for the defaults (the family of matched filters), the one filter of before, and the costliest settings
(the family in both directions, per-condition statistics, four widths and run lengths). No backbone: the numbers
are the whole of `hdmap fit-eval --model band` apart from reading the TIFFs.

    python benchmarks/band_cost.py [--threads 1] [--repeats 3] [--device cpu|cuda] [--out FILE]
Imports torch, numpy and tifffile only (besides hdmap): it runs on a bare GPU machine.
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
from hdmap.models.band import BandSettings, BandModel

SETTINGS = {"defaults (family)": BandSettings(),
            "one filter (statistic single)": BandSettings(statistic="single"),
            "costliest": BandSettings(direction="both", per_condition=True, widths=(1, 2, 3, 4),
                                    runs=(1.0, 0.5, 0.25, 0.1), centre_scale="median_mad", image_score="top")}


def seconds(run, repeats: int, device: str) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timings per cell; the fastest is reported")
    parser.add_argument("--device", default="cpu", help="where the detector fits and scores (cpu, cuda)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "band_cost.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = generate_domain("C", SynthConfig(n_train=1000, n_test=1000, seed=0, domains="C"))  # 1000 good + 1000 fault
    train = torch.from_numpy(np.stack(data["train"])).to(args.device)
    test = torch.from_numpy(np.stack(data["good"] + data["fault"])).to(args.device)
    rows = []
    for name, config in SETTINGS.items():
        detector = BandModel(config, tuple(train.shape[1:])).to(args.device)
        fit = seconds(lambda: detector.fit(train), args.repeats, args.device)
        score = seconds(lambda: detector.score(test), args.repeats, args.device)
        rows.append({"settings": name, "filters per line": config.members, "train maps": len(train),
                     "test maps": len(test), "fit s": f"{fit:.2f}", "score s": f"{score:.2f}",
                     "test maps / s": f"{len(test) / score:.0f}"})
    lines = ["# Band kind: fit and score cost at the user's size", "",
             f"- command: `python benchmarks/band_cost.py --threads {args.threads} --repeats {args.repeats} "
             f"--device {args.device}`",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {args.threads} thread(s), device {device_name(args.device)}; the fastest of "
             f"{args.repeats} runs",
             f"- generated: {time.strftime('%Y-%m-%d %H:%M')} by the script above; not edited by hand",
             f"- costliest: `{plain(SETTINGS['costliest'])}`", ""]
    lines += markdown_table(rows, list(rows[0]))
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
