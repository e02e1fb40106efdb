"""`hdmap eval`: reload a checkpoint (a search's best trial, a trial, a fit-eval run, or FE-CLIP adapters) and
score holdout with its tune threshold, using the checkpoint's own split and conditions."""
from __future__ import annotations

import sys
from pathlib import Path

from hdmap.jobs.checkpoints import find_checkpoint


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="reload a checkpoint and report holdout (threshold from tune)",
                       description=__doc__)
    p.add_argument("target", metavar="RUN", help="a search folder (runs/tune/<experiment>), a run folder or a .ckpt file")
    p.add_argument("--trial", help="trial id of a search (default: its best trial)")
    p.add_argument("--out", help="output folder (default: RUN/eval_<trial or best> for a search or a run folder, or eval/ beside a .ckpt file)")
    p.add_argument("--data-root", help="data root if it moved since the run (needed for FE-CLIP adapters)")
    p.add_argument("--domain", default="C", help="domain for FE-CLIP adapters without an HDMAP record")
    p.add_argument("--cache-dir")
    p.add_argument("--ignore-other-files", action="store_true",
                   help="skip files other than .tif/.tiff in the data folders (default: an error naming them)")
    p.set_defaults(run=run_eval)


def run_eval(args) -> int:
    from hdmap.evaluation.report import with_console_interval
    from hdmap.jobs.evaluate_checkpoint import evaluate_checkpoint

    run = Path(args.target)
    checkpoint = find_checkpoint(run, args.trial)
    default_out = run.parent / "eval" if run.is_file() else run / f"eval_{args.trial or 'best'}"
    out = Path(args.out) if args.out else default_out
    metrics = evaluate_checkpoint(checkpoint, out, args.data_root, args.cache_dir,
                                  command="hdmap " + " ".join(sys.argv[1:]), domain=args.domain,
                                  ignore_other_files=args.ignore_other_files)
    hold = metrics["holdout"]
    print(f"checkpoint {checkpoint}")
    ci = hold.get("intervals") or {}
    print(f"holdout (n={hold['n']}, threshold from tune {metrics['tune']['threshold']:.6g}): accuracy "
          f"{with_console_interval(hold['accuracy'], ci.get('accuracy'))}, AUROC "
          f"{with_console_interval(hold['auroc'], ci.get('auroc'))}, oracle accuracy "
          f"{100 * hold['accuracy_oracle']:.1f} %")
    print(f"wrote {out}/metrics.json and report.md")
    return 0
