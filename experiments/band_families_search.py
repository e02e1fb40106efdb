"""Does a short search reach the best detector of each band family? An 8-trial search of the quick space
(`hdmap tune --space hdmap_patchcore_quick.yaml --num-samples 8`) on one set per family of
experiments/band_families.py, its winner's holdout AUROC against the best of: the band detector tuned on the set's
tune maps (the best of band_families.py's candidates), PatchCore alone, PatchCore fused by max, and the fit-eval
defaults (the last three: band_families.py's runs of the same set, same split). Run band_families.py first.

    python experiments/band_families_search.py                 # ~45 min on a 2-core CPU
Writes experiments/results/band_families_search.md; searches under --storage (default runs/band_families_search).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from band_families import (BAND_FAMILIES, OTHER_FAMILIES, band_runs, synth_config)
from hdmap.data.synthetic_default import ensure_synthetic
from hdmap.evaluation.results_file import markdown_table, pct, stamp, write_results
from hdmap.features.backbones import OFFLINE_BACKBONE
from hdmap.tune.runner import SPACES_DIR, SearchOptions, run_search

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCES = ("PatchCore alone", "fused max", "fit-eval defaults")  # band_families.py's run folders


def search_row(family: str, contrast: float, seed: int, args) -> dict:
    root = str(ensure_synthetic(synth_config(family, contrast, seed)))
    study = Path(args.study_storage) / f"{family.replace(' ', '_')}_x{contrast:g}_seed{seed}"
    if not (study / "fit-eval_defaults" / "metrics.json").is_file():
        raise FileNotFoundError(f"{study}: run experiments/band_families.py first (its runs of this set)")
    references = {name: json.loads((study / name.replace(" ", "_") / "metrics.json").read_text())
                  for name in REFERENCES}
    bands = band_runs(root, study / "split.json")
    tuned = max(bands, key=lambda name: bands[name]["tune"]["auroc"])
    references["band tuned"] = bands[tuned]
    name = f"{family.replace(' ', '_')}_x{contrast:g}_seed{seed}"
    finished = Path(args.storage) / name / "summary.json"
    if finished.is_file():  # a search this script ran before: its summary, not a second search
        summary = json.loads(finished.read_text())
    else:
        summary = run_search(SearchOptions(data_root=root, space=str(SPACES_DIR / args.space),
                                           num_samples=args.trials, storage=str(Path(args.storage).resolve()),
                                           name=name, verbose=0, max_concurrent=args.max_concurrent))
    winner = summary["best"]
    holdout = {name: m["holdout"]["auroc"] for name, m in references.items()}
    best = max(holdout, key=holdout.get)
    gap = 100 * (winner["holdout"]["auroc"] - holdout[best])
    split = json.loads((study / "split.json").read_text())
    return {"set": f"{family} x{contrast:g} seed {seed}", "trials": summary["n_trials"],
            "winner holdout AUROC %": pct(winner["holdout"]["auroc"]),
            "winner": winner["start"] or "TPE", "kept the defaults": "yes" if summary["versus_defaults"]["defaults_won"]
            else "no", "winner fusion": winner["full_config"]["model"]["fusion"],
            **{f"{name} %": pct(value) for name, value in holdout.items()},
            "band tuned =": tuned, "best of the four": best, "winner - best": f"{gap:+.1f}",
            "within 1": "yes" if gap >= -1 else "NO",
            "same holdout maps": "yes" if sorted(split["holdout"]) == sorted(winner_holdout(summary)) else "NO"}


def winner_holdout(summary: dict) -> list[int]:
    """The holdout indices of the search's own split (written beside its experiment)."""
    return json.loads((Path(summary["experiment"]) / "split.json").read_text())["holdout"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="*", default=list(BAND_FAMILIES) + list(OTHER_FAMILIES))
    parser.add_argument("--contrast", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--space", default="hdmap_patchcore_quick.yaml")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--study-storage", default="runs/band_families", help="band_families.py's --storage")
    parser.add_argument("--storage", default="runs/band_families_search")
    parser.add_argument("--out", default=str(RESULTS / "band_families_search.md"))
    args = parser.parse_args()
    rows = [search_row(family, args.contrast, args.seed, args) for family in args.families]
    lines = ["# A short search on each band family", ""]
    lines += stamp(f"one set per family of band_families.py (x{args.contrast:g}, seed {args.seed})",
                   f"`{OFFLINE_BACKBONE}` (the quick space's)", True)
    lines += ["", f"Each search: {args.trials} trials of `{args.space}` (its first trial the defaults, then the band "
                  f"detector alone, then Optuna's TPE), {args.max_concurrent} at a time; the winner by the space's "
                  "tune objective, its holdout AUROC at the tune threshold's run. The four references are scored on "
                  "the same holdout maps (last column).", ""]
    lines += markdown_table(rows, list(rows[0]))
    misses = [r["set"] for r in rows if r["within 1"] == "NO"]
    lines += ["", f"Sets where the winner is more than 1 point below the best of the four: "
                  f"{', '.join(misses) if misses else 'none'}.", ""]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
