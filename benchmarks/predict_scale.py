"""`hdmap predict` on more and more maps: seconds and peak memory (RSS of the command) for 1,000 to 10,000 new maps,
so memory stays flat in the number of maps (maps stream through in batches). Each count runs as its own `hdmap
predict` process (its peak RSS from the OS), on maps of one synthetic domain C, with a band run and a PatchCore run
(the default kind at a small input size) fitted first. Each count starts from an empty feature cache: every
map's features are extracted (and kept).

    python benchmarks/predict_scale.py [--counts 1000 3000 10000] [--out benchmarks/results/predict_scale.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hdmap.data.synth import SynthConfig
from hdmap.data.synthetic_default import ensure_synthetic
from hdmap.evaluation.results_file import markdown_table, write_results

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = {"band": ["--model", "band"],
        "hdmap_patchcore, EfficientNet-Lite0 128 px": ["--backbone", "tf_efficientnet_lite0", "--set", "image_size=128"]}


def hdmap(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hdmap.cli.main", *args], check=True, stdout=subprocess.DEVNULL)


def list_file(folder: Path, maps: list[Path], count: int) -> Path:
    """A list of `count` map paths (repeated where the set holds fewer)."""
    path = folder / f"maps_{count}.txt"
    path.write_text("\n".join(str(maps[i % len(maps)]) for i in range(count)) + "\n")
    return path


def measure(run: Path, listing: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `hdmap predict` process, with an empty feature cache."""
    cache = out.parent / f"{out.name}_cache"
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "hdmap.cli.main", "predict", str(run), str(listing), "--out",
                              str(out), "--overwrite", "--no-images", "--cache-dir", str(cache)],
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"hdmap predict failed on {listing}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--storage", default="runs/predict_scale")
    parser.add_argument("--out", default=str(RESULTS / "predict_scale.md"))
    args = parser.parse_args(argv)
    storage = Path(args.storage)
    storage.mkdir(parents=True, exist_ok=True)
    root = ensure_synthetic(SynthConfig(n_train=200, n_test=5000, seed=21, domains="C"))
    maps = sorted((root / "domain_C" / "test").rglob("*.tiff"))
    rows = []
    for name, options in RUNS.items():
        run = storage / name.split(",")[0]
        if not (run / "model.ckpt").is_file():
            hdmap("fit-eval", "--data-root", str(root), "--out", str(run), *options)
        for count in args.counts:
            seconds, peak = measure(run, list_file(storage, maps, count), storage / f"pred_{count}")
            rows.append({"run": name, "maps": count, "seconds": f"{seconds:.0f}", "maps / s": f"{count / seconds:.0f}",
                         "peak RSS MB": f"{peak:.0f}"})
            print(rows[-1], flush=True)
    lines = ["# hdmap predict: time and memory against the number of maps", "",
             f"- command: `python {' '.join(sys.argv)}`",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores; batches of 256 maps; features of a map the "
             f"cache does not hold are extracted and kept",
             f"- data: synthetic domain C (`{root}`, 10000 test maps, the first N of them)",
             f"- generated: {time.strftime('%Y-%m-%d %H:%M')} by the script above; not edited by hand", ""]
    lines += markdown_table(rows, ["run", "maps", "seconds", "maps / s", "peak RSS MB"])
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
