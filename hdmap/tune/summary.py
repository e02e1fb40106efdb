"""After a search: all trials sorted by objective (failed ones with their error), a plot, and the best
checkpoint evaluated on holdout with its tune threshold."""
from __future__ import annotations

import json
import math
import re
import socket
from pathlib import Path

import numpy as np

from hdmap.atomic_files import atomic_path, write_text_atomic
from hdmap.jobs.evaluate_checkpoint import evaluate_checkpoint
from hdmap.tune.importance import EVALUATOR, importances, plot_top_parameters
from hdmap.tune.retries import earlier_error
from hdmap.tune.spaces import SearchSpace
from hdmap.tune.start_points import DEFAULTS_LABEL, label_of
from hdmap.tune.summary_md import write_summary_md


def _rows(results, starts: list[dict]) -> tuple[list[dict], list[dict]]:
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
                         "start": label_of(result.config, starts), "objective_se": metrics.get("objective_se"),
                         "timestamp": metrics.get("timestamp", 0),
                         **{k: metrics.get(k) for k in ("tune_accuracy", "tune_accuracy_cv", "tune_auroc",
                                                        "gate_accuracy", "repeats", "objective_sd_seeds")},
                         "seconds": {k: metrics.get(k) for k in ("features_s", "fit_s", "predict_s")},
                         "placement": {k: metrics.get(k) for k in ("node_id", "host", "device", "gpu_ids",
                                                                   "gpu_name", "gpu_share", "visible_devices",
                                                                   "placement_note")},
                         "peak_bytes": peak_bytes({k[len("memory_"):]: v for k, v in metrics.items()
                                                   if k.startswith("memory_")}),
                         "retried_after": earlier_error(Path(result.path)),
                         "checkpoint": result.checkpoint.path if result.checkpoint else None,
                         "number": trial_number(result.path), "reused_from": metrics.get("reused_from")})
    return with_reused_checkpoints(one_label_per_start(done)), failed


def with_reused_checkpoints(done: list[dict]) -> list[dict]:
    """A trial that reused an earlier trial's result (same config) points to that trial's checkpoint."""
    by_id = {row["trial_id"]: row for row in done}
    for row in done:
        original = by_id.get(row.get("reused_from"))
        if original is not None and row["checkpoint"] is None:
            row["checkpoint"] = original["checkpoint"]
            row["repeats_config_of"] = original["trial_id"]
    return done


def trial_number(path) -> int:
    """Tune's counter of a trial (trainable_<id>_<n>_...: n counts trials from 1); a large number if absent."""
    found = re.match(r"[^_]+_[0-9a-f]+_(\d+)_", Path(str(path)).name)
    return int(found.group(1)) if found else 1 << 30


def one_label_per_start(done: list[dict]) -> list[dict]:
    """A start point (the defaults, a --start config) labels the first trial that ran it only: a sampled trial that
    happens to repeat its config is a trial of its own, said to repeat it."""
    first: dict[str, dict] = {}
    for row in sorted(done, key=lambda r: (r["number"], r["timestamp"])):
        label = row["start"]
        if label is None:
            continue
        if label in first:
            row["start"], row["repeats_config_of"] = None, first[label]["trial_id"]
        else:
            first[label] = row
    return done


def rank_key(row: dict):
    """Higher objective first; on a tie the defaults win (a search must beat them, not match them)."""
    objective = row["objective"]
    finite = objective is not None and math.isfinite(objective)
    return (-objective if finite else math.inf, row["start"] != DEFAULTS_LABEL, row["timestamp"])


def verdict(done: list[dict], margin_se: float = 1.0) -> dict:
    """The winner, and whether it beat the defaults. `done` is ranked (rank_key). The best trial wins only if it
    beats the defaults by more than `margin_se` standard errors of the defaults' objective (the one-standard-
    error rule: a smaller gain on a few tune maps is not evidence); otherwise the defaults are kept."""
    defaults = next((r for r in done if r["start"] == DEFAULTS_LABEL), None)
    if defaults is None:
        return {"winner": done[0], "defaults_ran": False, "defaults_won": False, "defaults_objective": None,
                "gain": None}
    best = done[0]
    gain = best["objective"] - defaults["objective"]
    se = defaults["objective_se"]
    rule_note = None
    if se is None or not math.isfinite(se):  # the rule needs the defaults' standard error: said, not skipped silently
        rule_note = (f"the defaults' standard error is unknown ({se!r}): the one-standard-error rule could not be "
                     f"applied, so the highest tune objective wins")
        se = 0.0
    kept = best is not defaults and gain <= margin_se * se
    return {"winner": defaults if kept else best, "defaults_ran": True, "defaults_won": kept or best is defaults,
            "kept_within_margin": kept, "margin_se": margin_se, "rule_note": rule_note, "best_trial": best["trial_id"],
            "defaults_trial": defaults["trial_id"], "defaults_objective": defaults["objective"],
            "defaults_objective_se": defaults["objective_se"], "gain": gain}


def peak_bytes(memory: dict) -> int | None:
    """A trial's peak memory: GPU (torch's peak reserved + faiss's own) or CPU (peak resident set); None if unknown."""
    if memory.get("device") == "cuda":
        return int(memory.get("peak_reserved_bytes", 0)) + int(memory.get("faiss_scratch_bytes", 0))
    return memory.get("peak_rss_bytes")


def placement_counts(done: list[dict]) -> dict:
    """Finished trials per host and Ray node (short id)."""
    counts: dict = {}
    for row in done:
        where = row["placement"]
        device = where.get("device") or "?"
        if device == "cuda":
            device = f"cuda (GPU {where.get('gpu_ids') or '?'}: {where.get('gpu_name') or '?'})"
        key = f"{where.get('host') or '?'} / node {(where.get('node_id') or '?')[:8]} / {device}"
        counts[key] = counts.get(key, 0) + 1
    return counts


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
    with atomic_path(path) as target:
        fig.savefig(target, dpi=110)
    plt.close(fig)


def summarise(results, exp_dir: Path, metric: str, options, starts: list[dict] = (),
              space: SearchSpace | None = None, expected: int | None = None, study: dict | None = None) -> dict:
    """summary.json / summary.md of a search; fewer finished or failed trials than `expected` means it was
    interrupted: the summary says so and labels the winner as the best so far. `study`: where its Optuna study
    lives ({storage, study_name})."""
    done, failed = _rows(results, list(starts))
    done.sort(key=rank_key)
    ended = len(done) + len(failed)
    interrupted = expected is not None and ended < expected
    summary = {"experiment": str(exp_dir), "metric": metric, "n_trials": ended, "n_expected": expected,
               "status": (f"interrupted after {ended} of {expected} trials; continue with --resume"
                          if interrupted else "finished"), "interrupted": interrupted,
               "n_failed": len(failed), "failed": failed, "best": None,
               "n_retried": sum(1 for r in done if r["retried_after"]),
               "placement": placement_counts(done),
               "peak_memory_bytes": max((r["peak_bytes"] for r in done if r["peak_bytes"] is not None), default=None),
               "mean_trial_seconds": {k: float(np.mean([r["seconds"][k] for r in done if r["seconds"][k] is not None]))
                                      for k in ("features_s", "fit_s", "predict_s")} if done else {}}
    versus = verdict(done, getattr(options, "keep_defaults_within", 1.0)) if done else {}
    if done and versus["winner"]["checkpoint"]:
        best = versus.pop("winner")
        summary["versus_defaults"] = versus
        checkpoint = str(Path(best["checkpoint"]) / "model.ckpt")
        so_far = [f"BEST SO FAR: the search was {summary['status']}"] if interrupted else []
        so_far.append(f"the winner's holdout was scored in the search's own process on {socket.gethostname()}, after "
                      f"every trial ended (metrics.json `devices` says on what: its GPU if it has one, else its CPU)")
        holdout = evaluate_checkpoint(checkpoint, exp_dir / "best", cache_dir=options.cache_dir,
                                      ignore_other_files=options.ignore_other_files, notes=so_far)
        summary["best"] = {"trial_id": best["trial_id"], "config": best["config"], "tune_objective": best["objective"],
                           "checkpoint": checkpoint, "holdout": holdout["holdout"], "gate": holdout["gate"],
                           "threshold": holdout["tune"]["threshold"], "full_config": holdout["config"],
                           "start": best["start"], "tune": holdout["tune"], "repeats": best.get("repeats") or 1}
        plot_objective(done, exp_dir / "objective_vs_trial.png", metric)
    summary["space_notes"] = list(space.notes) if space is not None else []
    if space is not None:
        summary["importance"] = {"evaluator": EVALUATOR, "values": importances(space, done)}
        summary["importance"]["plot"] = plot_top_parameters(done, summary["importance"]["values"],
                                                            exp_dir / "importance.png", metric)
    if study:
        summary["optuna_study"] = study
    write_text_atomic(exp_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    write_summary_md(exp_dir / "summary.md", summary, done, failed, metric)
    return summary


