"""Does the search earn its keep? On each synthetic study set (three fault contrasts, two data seeds each) the
`fit-eval` defaults against the winner of a 16-trial search of the quick space (its defaults are trial 1), both
scored on the same holdout maps: holdout accuracy and AUROC with 95 % bootstrap intervals, and the paired
difference (paired bootstrap for AUROC, McNemar's exact test for accuracy at each run's own tune threshold).

    python experiments/search_vs_default.py                      # ~1 h on a 2-core CPU
    python experiments/search_vs_default.py --sets "hard-cold C" --seeds 11 --num-samples 4
Writes experiments/results/search_vs_default.md; the runs stay under --storage (default runs/search_vs_default).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hdmap.evaluation.compare import compare_runs
from hdmap.evaluation.results_file import stamp, write_results
from hdmap.features.backbones import OFFLINE_BACKBONE
from hdmap.features.cache import FeatureCache
from hdmap.jobs.checkpoints import save_checkpoint
from hdmap.kinds.registry import default_config, settings_of
from hdmap.data.domain import load_domain
from hdmap.jobs.run_files import write_run_outputs
from hdmap.kinds.registry import fit_and_score
from hdmap.tune.runner import SPACES_DIR, SearchOptions, run_search
from synthetic_sets import DATA_SEEDS, SETS, describe_sets, set_root

RESULTS = Path(__file__).resolve().parent / "results"


def fit_eval_defaults(root: str, out: Path, cache_dir: str | None) -> Path:
    """`hdmap fit-eval --data-root ROOT --backbone tf_efficientnet_lite0 --out OUT`, through the same functions."""
    if (out / "metrics.json").exists():
        return out
    config = settings_of(default_config(real_data=True, backbone=OFFLINE_BACKBONE))
    data = load_domain(root, "C", out / "split.json")
    module, outputs, metrics = fit_and_score(config, data, FeatureCache(cache_dir, progress=False))
    write_run_outputs(out, metrics, data, outputs, "search_vs_default.py: fit-eval defaults")
    save_checkpoint(out, module, config, data, metrics)
    return out


def search(root: str, storage: Path, name: str, num_samples: int, cache_dir: str | None) -> Path:
    exp_dir = storage / name
    if not (exp_dir / "summary.json").exists():  # an interrupted search continues where it stopped
        run_search(SearchOptions(data_root=root, space=str(SPACES_DIR / "hdmap_patchcore_quick.yaml"),
                                 num_samples=num_samples, storage=str(storage), name=name, cache_dir=cache_dir,
                                 verbose=0, resume=(exp_dir / "hdmap_search.json").exists()))
    return exp_dir


def ci(value, interval) -> str:
    return f"{100 * value:.1f} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else f"{100 * value:.1f}"


def row(set_name: str, seed: int, defaults_dir: Path, search_dir: Path) -> dict:
    summary = json.loads((search_dir / "summary.json").read_text())
    versus = summary["versus_defaults"]
    d_hold = json.loads((defaults_dir / "metrics.json").read_text())["holdout"]
    s_hold = summary["best"]["holdout"]
    cmp = compare_runs(search_dir, defaults_dir)
    a, c = cmp["auroc"], cmp["accuracy"]
    best_gain = f"{100 * versus['gain']:+.1f} tune"
    winner = ("defaults" if not versus.get("kept_within_margin") else f"defaults (best trial {best_gain}, < 1 se)")
    return {"set": set_name, "seed": seed, "winner": winner if versus["defaults_won"] else
            f"trial {summary['best']['trial_id']} ({best_gain})",
            "defaults acc": ci(d_hold["accuracy"], d_hold["intervals"]["accuracy"]),
            "defaults AUROC": ci(d_hold["auroc"], d_hold["intervals"]["auroc"]),
            "search acc": ci(s_hold["accuracy"], s_hold["intervals"]["accuracy"]),
            "search AUROC": ci(s_hold["auroc"], s_hold["intervals"]["auroc"]),
            "d AUROC": f"{100 * a['difference']:+.1f} [{100 * a['interval'][0]:+.1f}, {100 * a['interval'][1]:+.1f}]",
            "p AUROC": f"{a['p_value']:.3g}" if a["p_value"] > 0 else f"< {1 / a['n_boot']:.2g}", "d acc": f"{100 * c['difference']:+.1f}", "p acc": f"{c['p_value']:.3g}",
            "raw": {"auroc": a["difference"], "p_auroc": a["p_value"], "acc": c["difference"], "p_acc": c["p_value"]}}


COLUMNS = ["set", "seed", "winner", "defaults acc", "defaults AUROC", "search acc", "search AUROC", "d AUROC",
           "p AUROC", "d acc", "p acc"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="your ROOT (domain C) instead of the synthetic study sets")
    p.add_argument("--sets", nargs="+", default=list(SETS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(DATA_SEEDS))
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--storage", default="runs/search_vs_default")
    p.add_argument("--cache-dir")
    p.add_argument("--out", default=str(RESULTS / "search_vs_default.md"))
    args = p.parse_args(argv)
    storage = Path(args.storage).resolve()
    rows = []
    targets = ([("your data", 0, args.data_root)] if args.data_root else
               [(name, seed, None) for name in args.sets for seed in args.seeds])
    for set_name, seed, given_root in targets:
        root = given_root or set_root(set_name, seed)
        tag = f"{set_name.replace(' ', '_')}_seed{seed}"
        defaults_dir = fit_eval_defaults(root, storage / f"defaults_{tag}", args.cache_dir)
        search_dir = search(root, storage, f"search_{tag}_n{args.num_samples}", args.num_samples, args.cache_dir)
        rows.append(row(set_name, seed, defaults_dir, search_dir))
        print(rows[-1])
    worse = [r for r in rows if r["raw"]["auroc"] < 0]
    significant = [r for r in rows if min(r["raw"]["p_auroc"], r["raw"]["p_acc"]) < 0.05]
    lines = ["# Search against the defaults", ""]
    lines += stamp(args.data_root or "the synthetic study sets of experiments/synthetic_sets.py",
                   f"`{OFFLINE_BACKBONE}` (weights `default`, the quick space's taps)", args.data_root is None)
    lines += [f"- sets: {describe_sets(args.seeds) if not args.data_root else 'your data, domain C'}",
              f"- search: `hdmap tune --data-root ROOT --space search_spaces/hdmap_patchcore_quick.yaml --num-samples "
              f"{args.num_samples}` (objective tune accuracy_cv; the defaults are trial 1 and stay the winner unless a trial beats them by more than one standard error); defaults: "
              f"`hdmap fit-eval --data-root ROOT --backbone {OFFLINE_BACKBONE}`; the same tune/holdout split",
              "- holdout accuracy at each run's own tune threshold and AUROC, 95 % stratified bootstrap intervals;"
              " d = search minus defaults on the same holdout maps (paired bootstrap for AUROC, McNemar exact for"
              " accuracy); p < 0.05 = significant", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    lines += ["", f"Search AUROC below the defaults on {len(worse)} of {len(rows)} set/seed pairs"
                  + (": " + ", ".join(f"{r['set']} seed {r['seed']}" for r in worse) if worse else "") + ".",
              f"Differences significant at 0.05 (AUROC or accuracy): {len(significant)} of {len(rows)}"
              + (": " + ", ".join(f"{r['set']} seed {r['seed']}" for r in significant) if significant else "") + "."]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
