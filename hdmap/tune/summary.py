"""After a search: all trials sorted by objective (failed ones with their error), a plot, and the best
checkpoint evaluated on holdout with its tune threshold."""
from __future__ import annotations

import json
import math

import numpy as np
from pathlib import Path

from hdmap.run.evaluate_checkpoint import evaluate_checkpoint


def _rows(results) -> tuple[list[dict], list[dict]]:
    done, failed = [], []
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        if result.error is not None:
            message = str(result.error).strip().splitlines()
            failed.append({"trial_id": trial_id, "error": message[-1] if message else repr(result.error),
                           "config": result.config})
        elif "objective" in metrics:
            done.append({"trial_id": trial_id, "objective": metrics["objective"], "config": result.config,
                         "timestamp": metrics.get("timestamp", 0), "tune_auroc": metrics.get("tune_auroc"),
                         "gate_accuracy": metrics.get("gate_accuracy"),
                         "seconds": {k: metrics.get(k) for k in ("features_s", "fit_s", "predict_s")},
                         "checkpoint": result.checkpoint.path if result.checkpoint else None})
    return done, failed


def plot_objective(rows: list[dict], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(rows, key=lambda r: r["timestamp"])
    values = [r["objective"] for r in ordered]
    best = [max(values[:i + 1]) for i in range(len(values))]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(range(1, len(values) + 1), values, "o", label="trial")
    ax.plot(range(1, len(values) + 1), best, "-", label="best so far")
    ax.set_xlabel("trial (in order of completion)")
    ax.set_ylabel(f"tune {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(results, exp_dir: Path, metric: str, options) -> dict:
    done, failed = _rows(results)
    done.sort(key=lambda r: -r["objective"] if r["objective"] is not None and math.isfinite(r["objective"]) else math.inf)
    summary = {"experiment": str(exp_dir), "metric": metric, "n_trials": len(done) + len(failed),
               "n_failed": len(failed), "failed": failed, "best": None,
               "mean_trial_seconds": {k: float(np.mean([r["seconds"][k] for r in done if r["seconds"][k] is not None]))
                                      for k in ("features_s", "fit_s", "predict_s")} if done else {}}
    if done and done[0]["checkpoint"]:
        best = done[0]
        checkpoint = str(Path(best["checkpoint"]) / "model.ckpt")
        holdout = evaluate_checkpoint(checkpoint, exp_dir / "best", cache_dir=options.cache_dir)
        summary["best"] = {"trial_id": best["trial_id"], "config": best["config"], "tune_objective": best["objective"],
                           "checkpoint": checkpoint, "holdout": holdout["holdout"], "gate": holdout["gate"],
                           "threshold": holdout["tune"]["threshold"], "full_config": holdout["config"]}
        plot_objective(done, exp_dir / "objective_vs_trial.png", metric)
    (exp_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_summary_md(exp_dir / "summary.md", summary, done, failed, metric)
    return summary


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.1f}"


def write_summary_md(path: Path, summary: dict, done: list[dict], failed: list[dict], metric: str) -> None:
    lines = [f"# Search {Path(summary['experiment']).name}", "",
             f"Objective: {metric} on the tune split. Holdout numbers below are for the best trial only, with the",
             "threshold chosen on tune.", ""]
    best = summary["best"]
    if best:
        hold = best["holdout"]
        lines += [f"Best trial `{best['trial_id']}`: tune {metric} {_pct(best['tune_objective'])} %, holdout accuracy "
                  f"{_pct(hold['accuracy'])} %, holdout AUROC {_pct(hold['auroc'])} %, oracle accuracy "
                  f"{_pct(hold['accuracy_oracle'])} % (threshold on holdout, for comparison only).", "",
                  f"Checkpoint: `{best['checkpoint']}`", ""]
        holdout_value = hold.get(metric)
        if holdout_value is not None and best["tune_objective"] is not None:
            gap = 100 * (best["tune_objective"] - holdout_value)
            lines += [f"Tune minus holdout {metric}: {gap:+.1f} points. The best of many trials on a small tune split",
                      "is an optimistic estimate; the holdout number is the one to report.", ""]
        lines += ["![objective vs trial](objective_vs_trial.png)", ""]
    keys = sorted({k for row in done for k in row["config"]})
    lines += [f"## Trials ({len(done)} finished, {len(failed)} failed)", "",
              "| rank | trial | tune " + metric + " % | tune AUROC % | gate acc % | " + " | ".join(keys) + " |",
              "|" + "---|" * (5 + len(keys))]
    for rank, row in enumerate(done, 1):
        cells = [str(row["config"].get(k, "")) for k in keys]
        lines.append(f"| {rank} | {row['trial_id']} | {_pct(row['objective'])} | {_pct(row['tune_auroc'])} | "
                     f"{_pct(row['gate_accuracy'])} | " + " | ".join(cells) + " |")
    if failed:
        lines += ["", "## Failed trials", "", "| trial | error |", "|---|---|"]
        lines += [f"| {row['trial_id']} | {row['error'].replace('|', '/')} |" for row in failed]
    path.write_text("\n".join(lines) + "\n")
