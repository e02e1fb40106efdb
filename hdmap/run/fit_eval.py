"""`hdmap fit-eval`: fit one model on a domain, evaluate under the tune/holdout protocol, write a report."""
from __future__ import annotations

import sys
from pathlib import Path

from hdmap.features.backbones import BACKBONES
from hdmap.run.config import MODELS, default_config, load_yaml, merge, parse_set, validate


def add_fit_eval(sub) -> None:
    p = sub.add_parser("fit-eval", help="fit and evaluate one model on one domain")
    p.add_argument("--data-root", help="ROOT with domain_X folders (default: embedded synthetic data)")
    p.add_argument("--domain", default="C")
    p.add_argument("--model", choices=list(MODELS), default=None)
    p.add_argument("--backbone", help=f"backbone preset with its own taps, image size and weights "
                                      f"({', '.join(sorted(BACKBONES))}); e.g. tf_efficientnet_lite0 works offline")
    p.add_argument("--config", help="YAML file of settings (the keys of the README's settings table)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--out", required=True, help="a new folder (or one holding a run, with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out holds")
    p.add_argument("--split", help="reuse this split.json (default: a new seeded split, saved as OUT/split.json)")
    add_data_options(p)
    p.add_argument("--cache-dir", help="feature cache folder (default $HDMAP_CACHE or ~/.cache/hdmap/features)")
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


def resolve_config(data_root: str | None, model: str | None, config_path: str | None, sets: list[str],
                   backbone: str | None = None) -> dict:
    """Defaults (of the model, with the backbone's presets), then the YAML file, then --set."""
    loaded = load_yaml(config_path) if config_path else {}
    model = model or loaded.get("model_name")
    config = default_config(real_data=data_root is not None, model_name=model, backbone=backbone)
    config = merge(config, loaded)
    if model:
        config["model_name"] = model
    return validate(merge(config, parse_set(sets)))


RUN_FILES = ("metrics.json", "report.md", "scores.csv", "model.ckpt", "config.json", "trial_metrics.json",
             "split.json", "scores.png", "anomaly_maps.png")


def held_run_files(out: Path) -> list[str]:
    """The files of an earlier run in `out` (a run folder is refused unless --overwrite)."""
    return [name for name in RUN_FILES if (out / name).exists()]


def run_fit_eval(args) -> int:
    from hdmap.data.synthetic_default import ensure_embedded_dataset
    from hdmap.features.cache import FeatureCache
    from hdmap.run.checkpoints import save_checkpoint
    from hdmap.data.domain import load_domain
    from hdmap.run.outputs import write_run_outputs
    from hdmap.run.pipeline import fit_and_score

    config = resolve_config(args.data_root, args.model, args.config, args.set, args.backbone)
    out = Path(args.out)
    held = held_run_files(out)
    if held and not args.overwrite:
        raise FileExistsError(f"{out} already holds a run ({', '.join(held)}): pass --overwrite to replace it, "
                              f"or choose another --out")
    if args.split and not Path(args.split).is_file():
        raise FileNotFoundError(f"--split {args.split}: no such split.json")
    root = args.data_root or str(ensure_embedded_dataset())
    data = load_domain(root, args.domain, args.split, config["split"]["tune_fraction"], config["split"]["seed"],
                       args.condition_csv, condition_csv_partial=args.condition_csv_partial,
                       ignore_other_files=args.ignore_other_files)
    module, outputs, metrics = fit_and_score(config, data, FeatureCache(args.cache_dir), progress=True)
    out.mkdir(parents=True, exist_ok=True)  # nothing is written before the inputs and the fit succeeded
    for name in held:
        (out / name).unlink()
    data.split.save(out / "split.json")
    command = "hdmap " + " ".join(sys.argv[1:]) if sys.argv and "hdmap" in sys.argv[0] else None
    write_run_outputs(out, metrics, data, outputs, command)
    save_checkpoint(out, module, config, data, metrics)
    print_summary(metrics, out)
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
    gate = metrics["gate"]
    gate_text = (f"gate {gate['kind']} accuracy {pct(gate['accuracy'])} %" if gate["kind"]
                 else "no gate (one bank, references drawn without conditions)")
    console.print(f"oracle accuracy (threshold on holdout, for comparison only): {pct(hold['accuracy_oracle'])} %; "
                  f"{gate_text}")
    for note in metrics.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"wrote {out}/metrics.json, report.md and the checkpoint")
