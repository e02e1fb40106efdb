"""Two runs scored on the same holdout maps: the paired difference of AUROC (paired bootstrap) and of accuracy at
each run's own tune threshold (McNemar's exact test), so one setting can be called better than another only
when the data say so."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hdmap.evaluation.scores_file import SCORES_FILE, file_digest, read_scores
from hdmap.evaluation.uncertainty import mcnemar_exact, paired_auroc_difference, strata_of


class RunsDifferError(ValueError):
    """Two runs that were not scored on the same holdout maps."""


def run_folder(path: str | Path) -> Path:
    """A run folder (metrics.json + scores.csv); a search folder stands for its winner's evaluation (best/)."""
    path = Path(path)
    if (path / "summary.json").is_file() and not (path / "metrics.json").is_file():
        path = path / "best"
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(f"{path}: no metrics.json (expected a fit-eval / eval output folder or a search)")
    return path


def load_run(path: str | Path) -> dict:
    folder = run_folder(path)
    metrics = json.loads((folder / "metrics.json").read_text())
    recorded = metrics.get("scores_sha256")
    if recorded and file_digest(folder / SCORES_FILE) != recorded:
        raise RunsDifferError(f"{folder / SCORES_FILE}: changed since the run wrote it (its digest differs from the one "
                              f"in metrics.json): rerun `hdmap eval` on the run to write it again")
    scores = read_scores(folder / SCORES_FILE)
    holdout = scores["split"] == "holdout"
    return {"folder": folder, "metrics": metrics, "threshold": metrics["tune"]["threshold"],
            **{k: v[holdout] for k, v in scores.items()}}


def check_same_maps(a: dict, b: dict) -> None:
    for key, what in (("file", "holdout files"), ("label", "labels"), ("condition", "conditions")):
        if not np.array_equal(a[key], b[key]):
            raise RunsDifferError(f"{a['folder']} and {b['folder']} differ in their {what}: compare needs both runs "
                                  f"scored on the same holdout maps (same data and split.json)")
    fa, fb = a["metrics"].get("test_fingerprint"), b["metrics"].get("test_fingerprint")
    if fa and fb and fa != fb:
        raise RunsDifferError(f"{a['folder']} and {b['folder']}: the test maps differ in content (fingerprints "
                              f"{fa} and {fb})")


def compare_runs(path_a: str | Path, path_b: str | Path, n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of run A against run B on their common holdout maps (refused if they differ)."""
    a, b = load_run(path_a), load_run(path_b)
    check_same_maps(a, b)
    strata = strata_of(a["label"], list(a["condition"]))
    correct_a = (a["score"] >= a["threshold"]) == (a["label"] == 1)
    correct_b = (b["score"] >= b["threshold"]) == (b["label"] == 1)
    return {"a": str(a["folder"]), "b": str(b["folder"]), "n": int(len(a["label"])),
            "auroc": {"a": a["metrics"]["holdout"]["auroc"], "b": b["metrics"]["holdout"]["auroc"],
                      **paired_auroc_difference(a["score"], b["score"], a["label"], strata, n_boot, seed)},
            "accuracy": {"a": float(correct_a.mean()), "b": float(correct_b.mean()),
                         **mcnemar_exact(correct_a, correct_b)}}


def describe(result: dict, alpha: float = 0.05) -> list[str]:
    lines = [f"A: {result['a']}", f"B: {result['b']}", f"holdout maps: {result['n']} (the same in both runs)"]
    for name, test in (("AUROC", "paired bootstrap"), ("accuracy", "McNemar exact, each run's tune threshold")):
        r = result[name.lower()]
        low, high = r["interval"]
        verdict = "significant" if r["p_value"] < alpha else "not significant"
        p_text = (f"p = {r['p_value']:.3g}" if r["p_value"] > 0 or "n_boot" not in r
                  else f"p < {1 / r['n_boot']:.2g}")
        lines.append(f"{name}: A {100 * r['a']:.1f} %, B {100 * r['b']:.1f} %, A - B {100 * r['difference']:+.1f} "
                     f"points [95 % CI {100 * low:+.1f}, {100 * high:+.1f}], {p_text} ({test}; "
                     f"{verdict} at {alpha})")
    return lines
