"""Reload the best (or a chosen) trial's checkpoint of a search and evaluate it on holdout with the tune threshold.

    python experiments/eval_best.py runs/tune/<experiment> [--trial TRIAL_ID] [--out DIR] [--data-root ROOT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hdmap.run.evaluate_checkpoint import evaluate_checkpoint


def find_checkpoint(run_dir: Path, trial: str | None) -> Path:
    summary_file = run_dir / "summary.json"
    if trial is None:
        if not summary_file.exists():
            raise FileNotFoundError(f"{summary_file} not found: is {run_dir} a finished search? (or pass --trial)")
        best = json.loads(summary_file.read_text())["best"]
        if not best:
            raise ValueError(f"{run_dir}: the search has no finished trial")
        return Path(best["checkpoint"])
    matches = sorted(run_dir.glob(f"*{trial}*/checkpoint_*/model.ckpt"))
    if not matches:
        raise FileNotFoundError(f"no checkpoint for trial {trial!r} under {run_dir}")
    return matches[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--trial", help="trial id (default: the best trial of summary.json)")
    p.add_argument("--out", help="output folder (default RUN_DIR/eval_<trial or best>)")
    p.add_argument("--data-root", help="data root if it moved since the search")
    p.add_argument("--cache-dir")
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    checkpoint = find_checkpoint(run_dir, args.trial)
    out = Path(args.out) if args.out else run_dir / f"eval_{args.trial or 'best'}"
    metrics = evaluate_checkpoint(checkpoint, out, args.data_root, args.cache_dir,
                                  command="python experiments/eval_best.py " + " ".join(argv or sys.argv[1:]))
    hold = metrics["holdout"]
    print(f"checkpoint {checkpoint}")
    print(f"holdout (n={hold['n']}, threshold from tune {metrics['tune']['threshold']:.6g}): accuracy "
          f"{100 * hold['accuracy']:.1f} %, AUROC {100 * hold['auroc']:.1f} %, oracle accuracy "
          f"{100 * hold['accuracy_oracle']:.1f} %")
    print(f"wrote {out}/metrics.json and report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
