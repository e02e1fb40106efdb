"""`hdmap tune`: search the detector settings that maximise domain C accuracy on the tune split, then report the
best trial's holdout numbers. No arguments: the embedded synthetic data, the offline EfficientNet-Lite0 and the
model's small `_quick` space (minutes on a laptop CPU). With --data-root: your data, DINOv2 by name (or
--backbone NAME), search_spaces/<model>.yaml."""
from __future__ import annotations

import argparse
from pathlib import Path

from hdmap.kinds.registry import DEFAULT_MODEL, KINDS, current_name
from hdmap.cli.fit_eval import add_data_options
from hdmap.cli.synth import at_least


INTERRUPTED_EXIT = 130  # the shell's code for a command ended by Ctrl+C


def gpu_share(text: str):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus-per-trial expects a number or auto, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--gpus-per-trial must be >= 0, got {value}")
    return value


def add_tune(sub) -> None:
    p = sub.add_parser("tune", help="search settings with Ray Tune (tune split), report holdout of the best",
                       description=__doc__)
    p.add_argument("--data-root", help="ROOT with domain_X folders (default: embedded synthetic data)")
    p.add_argument("--domain", default="C")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=list(KINDS), type=current_name,
                   help="the model kind (former names are accepted with a note)")
    p.add_argument("--backbone", help="backbone preset (its taps, image size, weights), e.g. tf_efficientnet_lite0 "
                                      "offline; default: the space's (DINOv2 ViT-S/14 with --data-root)")
    p.add_argument("--config", help="YAML file of base settings of the search (the keys of docs/settings.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one base setting of the search (a key the space searches is refused)")
    p.add_argument("--space", help="search space YAML (default: the packaged <model>.yaml; <model>_quick.yaml on "
                                   "the embedded synthetic data)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="trials (default 12 synthetic, 64 real data); with --resume: grow the search to this many")
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--trial-tasks", type=at_least(0), default=0, metavar="K",
                   help="each trial reserves K more bundles like its own (its placement group) and spreads its fit's "
                        "feature extraction and coreset windows over them as Ray tasks (hdmap/spread.py)")
    p.add_argument("--gpus-per-trial", type=gpu_share, default="auto",
                   help="fractional: 0.25 lets four trials share a GPU; auto (default): the cluster's GPUs shared "
                        "over --max-concurrent trials (0 on a cluster without GPUs: trials hide every GPU)")
    p.add_argument("--address", help="join a running Ray cluster (ray start --head / ray start --address=HEAD:6379)")
    p.add_argument("--storage", default="runs/tune", help="where experiments, trials and checkpoints are kept")
    p.add_argument("--name", help="experiment name (default: model_domain_timestamp)")
    p.add_argument("--resume", action="store_true", help="continue the named (or latest) interrupted search")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: run failed trials again")
    p.add_argument("--allow-space-change", action="store_true",
                   help="with --resume: run the rest under a space file edited since the search began (recorded)")
    p.add_argument("--trust-search-files", action="store_true",
                   help="with --resume: resume a folder whose Ray files are not as the search left them (a search "
                        "of an older hdmap or one killed with kill -9); resuming unpickles them")
    p.add_argument("--max-retries", type=int, default=1,
                   help="run a trial whose worker or node was lost again, up to this many times (default 1); a "
                        "trial that failed in its own code is not run again")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="the Optuna study's database (default: sqlite:///<experiment>/<name>.optuna.db), e.g. a "
                        "PostgreSQL server several searches share")
    p.add_argument("--dashboard", action="store_true", help="start the Ray dashboard on 127.0.0.1 and print its URL")
    p.add_argument("--metric", choices=["accuracy_cv", "accuracy", "auroc"],
                   help="objective on the tune split (default: the space's; accuracy_cv in every shipped space)")
    p.add_argument("--start", action="append", default=[], metavar="FILE.yaml",
                   help="configs to try right after the defaults (a mapping of settings or a list of them)")
    p.add_argument("--keep-defaults-within", type=float, default=1.0, metavar="K",
                   help="the defaults stay the winner unless a trial beats them by more than K standard errors of "
                        "their tune objective (default 1, the one-standard-error rule; 0: the highest objective wins)")
    p.add_argument("--repeats", type=int, default=1,
                   help="a trial's objective is the mean over this many reference/coreset seeds (steadier, slower)")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    p.add_argument("--cache-dir", help="feature cache (default $HDMAP_CACHE or ~/.cache/hdmap/features)")
    p.add_argument("--no-cache", action="store_true", help="recompute features in every trial (benchmarks)")
    add_data_options(p)
    p.set_defaults(run=run_tune)


ARGUMENT_OF = {"sets": "set"}  # SearchOptions fields whose flag has another name


def options_from(args):
    """SearchOptions from the parsed flags, field by field (a field without a flag keeps its default); counts and
    shares are checked once, by the search (`hdmap.tune.runner.check_counts`), for the CLI and the Python API."""
    from dataclasses import fields

    from hdmap.tune.runner import SearchOptions

    values = {f.name: getattr(args, ARGUMENT_OF.get(f.name, f.name)) for f in fields(SearchOptions)
              if hasattr(args, ARGUMENT_OF.get(f.name, f.name))}
    values["sets"] = list(values.get("sets") or [])
    return SearchOptions(**values)


def print_best(summary: dict) -> None:
    best = summary["best"]
    print(f"\n{summary['n_trials']} trials, {summary['n_failed']} failed, {summary.get('n_retried', 0)} finished "
          f"after a retry. Experiment: {summary['experiment']}")
    for where, count in summary.get("placement", {}).items():
        print(f"  {count} trial(s) ran on {where}")
    for failure in summary["failed"]:
        print(f"  failed trial {failure['trial_id']}: {failure['error']}")
    if not best:
        print("no trial finished; nothing to evaluate")
        return
    hold = best["holdout"]
    versus = summary.get("versus_defaults") or {}
    if versus.get("rule_note"):
        print(f"note: {versus['rule_note']}")
    if versus.get("kept_within_margin"):
        print(f"winner: the defaults (trial {best['trial_id']}): the best trial {versus['best_trial']} beat them by "
              f"{100 * versus['gain']:+.1f} points on tune {summary['metric']}, within "
              f"{versus['margin_se']:g} standard error(s) ({100 * (versus['defaults_objective_se'] or 0):.1f})")
    elif versus.get("defaults_won"):
        print(f"winner: the defaults (trial {best['trial_id']}): no trial beat them on tune {summary['metric']}")
    elif versus.get("defaults_ran"):
        print(f"winner: trial {best['trial_id']}, {100 * versus['gain']:+.1f} points over the defaults' tune "
              f"{summary['metric']} (standard error {100 * (versus['defaults_objective_se'] or 0):.1f})")
    print(f"best trial {best['trial_id']}: tune {summary['metric']} = {100 * best['tune_objective']:.1f} %")
    if (best.get("repeats") or 1) > 1:
        print(f"  (the mean over {best['repeats']} seeds; its checkpoint, holdout and standard error are seed 0's)")
    print("best config:")
    for key, value in sorted(best["config"].items()):
        print(f"  {key} = {value}")
    from hdmap.evaluation.report import with_console_interval

    ci = hold.get("intervals") or {}
    print(f"holdout (n={hold['n']}, threshold from tune): accuracy "
          f"{with_console_interval(hold['accuracy'], ci.get('accuracy'))}, "
          f"AUROC {with_console_interval(hold['auroc'], ci.get('auroc'))}, "
          f"cold AUROC {100 * hold['by_condition']['cold']['auroc']:.1f} %, "
          f"warm AUROC {100 * hold['by_condition']['warm']['auroc']:.1f} %; "
          f"oracle accuracy {100 * hold['accuracy_oracle']:.1f} % (threshold on holdout, comparison only)")
    print(f"best checkpoint: {best['checkpoint']}")
    print(f"summary: {Path(summary['experiment']) / 'summary.md'}")
    study = summary.get("optuna_study")
    if study:
        print(f"Optuna study '{study['study_name']}': optuna-dashboard {study['storage']}   (pip install -e "
              f"\".[dashboard]\"; or optuna.load_study(study_name=..., storage=...))")


def run_tune(args) -> int:
    from hdmap.tune.runner import run_search

    summary = run_search(options_from(args))
    print_best(summary)
    if summary.get("interrupted"):
        print(f"search {summary['status']} (the numbers above are the best so far)")
        return INTERRUPTED_EXIT
    return 0 if summary["best"] else 1
