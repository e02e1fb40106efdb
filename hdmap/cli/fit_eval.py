"""`hdmap fit-eval`: fit one model on a domain, evaluate under the tune/holdout protocol, write a report."""
from __future__ import annotations

import sys
from pathlib import Path

from hdmap.features.backbones import BACKBONES
from hdmap.kinds.registry import KINDS, current_name


def add_fit_eval(sub) -> None:
    p = sub.add_parser("fit-eval", help="fit and evaluate one model on one domain",
                       epilog="Every setting (key, type, default, accepted values): docs/settings.md")
    p.add_argument("--data-root", help="ROOT with domain_X folders (default: embedded synthetic data)")
    p.add_argument("--domain", default="C")
    p.add_argument("--model", default=None, choices=list(KINDS), type=current_name,
                   help="the model kind (former names are accepted with a note)")
    p.add_argument("--backbone", help=f"backbone preset with its own taps, image size and weights "
                                      f"({', '.join(sorted(BACKBONES))}); e.g. tf_efficientnet_lite0 works offline")
    p.add_argument("--config", help="YAML file of settings (the keys of docs/settings.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (every key: docs/settings.md)")
    p.add_argument("--out", required=True, help="a new folder (or one holding a run, with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out holds")
    p.add_argument("--split", help="reuse this split.json (default: a new seeded split, saved as OUT/split.json)")
    add_data_options(p)
    p.add_argument("--cache-dir", help="feature cache folder (default $HDMAP_CACHE or ~/.cache/hdmap/features)")
    p.add_argument("--address", help="join a running Ray cluster (`auto`, or HEAD:6379 as `ray start` prints) and "
                                     "spread this fit over it: feature extraction in shards and the coreset's "
                                     "windows as Ray tasks on its GPUs (or CPUs); the same bank as without it")
    p.set_defaults(run=run_fit_eval)


def add_data_options(p) -> None:
    """How the data folders are read (fit-eval and tune): condition CSV and the other-files rule."""
    p.add_argument("--condition-csv", help="CSV path,condition overriding the file-index condition rule (paths "
                                           "relative to the data root)")
    p.add_argument("--condition-csv-partial", action="store_true",
                   help="the condition CSV may leave test maps out: the file-index rule for the rest (counted in "
                        "metrics.json)")
    p.add_argument("--ignore-other-files", action="store_true",
                   help="skip files other than .tif/.tiff in the data folders (default: an error naming them)")
    p.add_argument("--allow-duplicates", action="store_true",
                   help="go on when a map's bytes appear in train and test or under two labels (default: an error "
                        "naming both files); each pair is recorded in metrics.json's notes")


def run_fit_eval(args) -> int:
    from hdmap.jobs.fit_eval import DataOptions, fit_eval, resolve_config

    config = resolve_config(args.data_root, args.model, args.config, args.set, args.backbone)
    source = DataOptions(args.data_root, args.domain, args.split, args.condition_csv, args.condition_csv_partial,
                         args.ignore_other_files, args.allow_duplicates)
    command = "hdmap " + " ".join(sys.argv[1:]) if sys.argv and "hdmap" in sys.argv[0] else None
    metrics = fit_eval(config, source, args.out, args.overwrite, args.cache_dir, command, address=args.address)
    print_summary(metrics, Path(args.out))
    return 0


def print_summary(metrics: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from hdmap.evaluation.report import holdout_rows
    from hdmap.evaluation.report import percent as pct

    table = Table(title=f"{metrics['model']} / domain {metrics['domain']} (holdout, threshold from tune)")
    for column in ("subset", "n", "AUROC % [95 % CI]", "accuracy % [95 % CI]"):
        table.add_column(column)
    hold = metrics["holdout"]
    for row in holdout_rows(hold):
        table.add_row(row["subset"], str(row["n"]), row["auroc"], row["accuracy"])
    console = Console()
    console.print(table)
    gate = metrics.get("gate") or {}
    gate_text = (f"gate {gate['kind']} accuracy {pct(gate['accuracy'])} %" if gate.get("kind")
                 else "no gate (one bank, references drawn without conditions)")
    console.print(f"oracle accuracy (threshold on holdout, for comparison only): {pct(hold['accuracy_oracle'])} %; "
                  f"{gate_text}")
    for note in metrics.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"wrote {out}/metrics.json, report.md and the checkpoint")
