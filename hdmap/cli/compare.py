"""`hdmap compare RUN_A RUN_B`: is one run really better than the other on the same holdout maps?"""
from __future__ import annotations

import json


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="paired comparison of two runs on the same holdout maps",
                       description=__doc__ + " RUN: a fit-eval or eval output folder, or a search folder (its "
                                             "winner). Runs on different maps are refused.")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap draws of the AUROC difference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the result as JSON to this file")
    p.set_defaults(run=run_compare)


def run_compare(args) -> int:
    from hdmap.atomic_files import write_text_atomic
    from hdmap.evaluation.compare import compare_runs, describe

    if args.n_boot < 100:
        from hdmap.config import ConfigError
        raise ConfigError(f"--n-boot expects an integer >= 100 (bootstrap draws of an interval), got {args.n_boot}")
    result = compare_runs(args.run_a, args.run_b, args.n_boot, args.seed)
    print("\n".join(describe(result)))
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2))
    return 0
