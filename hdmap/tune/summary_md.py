"""summary.md of a search: the winner against the defaults, holdout with intervals, every trial with its
objective's standard error, and which settings mattered."""
from __future__ import annotations

from pathlib import Path

from hdmap.atomic_files import write_text_atomic
from hdmap.evaluation.report import holdout_rows
from hdmap.evaluation.report import percent as pct

OBJECTIVES = {"accuracy_cv": "accuracy with cross-fitted thresholds (each half of the tune maps judged at the "
                             "threshold chosen on the other half, both ways, over 5 seeded stratified splits)",
              "accuracy": "best accuracy on the tune maps, threshold chosen on those same maps (optimistic)",
              "auroc": "AUROC on the tune maps"}


def holdout_lines(hold: dict) -> list[str]:
    """Holdout table with 95 % bootstrap intervals, overall and per condition."""
    intervals = hold.get("intervals") or {}
    lines = ["| holdout | n | accuracy % [95 % CI] | AUROC % [95 % CI] |", "|---|---|---|---|"]
    lines += [f"| {r['subset']} | {r['n']} | {r['accuracy']} | {r['auroc']} |" for r in holdout_rows(hold)]
    if intervals:
        lines += ["", f"Intervals: {intervals['method']}, {intervals['n_boot']} draws, seed {intervals['seed']}."]
    return lines


def versus_lines(versus: dict, metric: str) -> list[str]:
    if not versus.get("defaults_ran"):
        return ["The defaults did not finish as a trial (failed, or the search was resumed from an older run): this "
                "winner was not compared with them.", ""]
    defaults = (f"the defaults (trial `{versus['defaults_trial']}`) reach tune {metric} "
                f"{pct(versus['defaults_objective'])} ± {pct(versus['defaults_objective_se'])} (standard error)")
    if versus.get("rule_note"):
        defaults += f". Note: {versus['rule_note']}"
    if versus.get("kept_within_margin"):
        return [f"**Winner: the defaults.** The best trial `{versus['best_trial']}` beat them by "
                f"{100 * versus['gain']:+.1f} points on the tune objective, within {versus['margin_se']:g} standard "
                f"error(s): not evidence of a better setting, so the defaults are kept (`--keep-defaults-within`); "
                f"{defaults}.", ""]
    if versus["defaults_won"]:
        return [f"**Winner: the defaults.** No trial beat them on the tune objective: {defaults}.", ""]
    gain = 100 * versus["gain"]
    se = versus["defaults_objective_se"]
    size = (f"{versus['gain'] / se:.1f} standard errors" if se else "their standard error is 0")
    return [f"The winner beats the defaults by {gain:+.1f} points on the tune objective ({size}; the defaults are "
            f"kept within {versus.get('margin_se', 0):g}); {defaults}. `hdmap compare` on holdout says whether the "
            f"gain holds.", ""]


def placement_lines(summary: dict, done: list[dict]) -> list[str]:
    """Where the finished trials ran (host / Ray node / device), which were retried and why, placement notes."""
    lines = ["", "## Where trials ran", "", "| host / Ray node / device | finished trials |", "|---|---|"]
    lines += [f"| {where} | {count} |" for where, count in summary.get("placement", {}).items()]
    retried = [row for row in done if row.get("retried_after")]
    if retried:
        lines += ["", f"{len(retried)} trial(s) finished after a retry (Ray's failure settings: `--max-retries`):", ""]
        lines += [f"- `{row['trial_id']}` retried after: {row['retried_after']}" for row in retried]
    notes = sorted({row["placement"].get("placement_note") for row in done} - {None, ""})
    lines += [f"- note: {note}" for note in notes]
    return lines + memory_lines(done)


def memory_lines(done: list[dict]) -> list[str]:
    """Each finished trial's peak memory: on a GPU torch's peak reserved plus faiss's own (the CUDA context, about
    0.5 GiB a process, comes on top); on the CPU the process's peak resident set (a reused worker's whole life)."""
    rows = [(row, row["peak_bytes"]) for row in done if row.get("peak_bytes") is not None]
    if not rows:
        return []
    lines = ["", "Peak memory per trial (GPU: torch reserved + faiss; CPU: peak resident set of the worker):", "",
             "| trial | device | GPU ids (share) | peak GiB |", "|---|---|---|---|"]
    for row, peak in rows:
        where = row["placement"]
        gpus = f"{where.get('gpu_ids')} ({where.get('gpu_share') or 0:g})" if where.get("device") == "cuda" else "-"
        lines.append(f"| `{row['trial_id']}` | {where.get('device')} | {gpus} | {peak / 2 ** 30:.2f} |")
    return lines


def write_summary_md(path: Path, summary: dict, done: list[dict], failed: list[dict], metric: str) -> None:
    lines = [f"# Search {Path(summary['experiment']).name}", "",
             f"Objective: tune `{metric}`: {OBJECTIVES.get(metric, metric)}. Each trial also reports the other tune",
             "metrics; ± is the objective's standard error on the tune maps. Holdout numbers are for the winner only,",
             "at the threshold chosen on tune.", ""]
    if summary.get("interrupted"):
        lines += [f"**The search was {summary['status']}.** Everything below is the best SO FAR.", ""]
    best = summary["best"]
    if best:
        hold = best["holdout"]
        lines += versus_lines(summary.get("versus_defaults", {}), metric)
        so_far = " so far" if summary.get("interrupted") else ""
        lines += [f"Winner{so_far} `{best['trial_id']}`" + (f" ({best['start']})" if best.get("start") else "") +
                  f": tune {metric} {pct(best['tune_objective'])} %; oracle holdout accuracy "
                  f"{pct(hold['accuracy_oracle'])} % (threshold on holdout, for comparison only).", ""]
        if (best.get("repeats") or 1) > 1:
            lines += [f"Ranked on the mean over {best['repeats']} reference/coreset seeds; its checkpoint, the holdout "
                      f"numbers below and its standard error are those of seed 0 (`--repeats`).", ""]
        lines += holdout_lines(hold) + ["", f"Checkpoint: `{best['checkpoint']}`", "",
                                        "![objective vs trial](objective_vs_trial.png)", ""]
    if summary.get("space_notes"):
        lines += ["## The search space, fitted to the backbone and the data", ""]
        lines += [f"- {note}" for note in summary["space_notes"]] + [""]
    keys = sorted({k for row in done for k in row["config"]})
    lines += [f"## Trials ({len(done)} finished, {len(failed)} failed)", "",
              f"| rank | trial | start | tune {metric} % ± se | tune acc % | tune acc_cv % | tune AUROC % | "
              "gate acc % | " + " | ".join(keys) + " |", "|" + "---|" * (8 + len(keys))]
    for rank, row in enumerate(done, 1):
        cells = [str(row["config"].get(k, "")) for k in keys]
        start = row["start"] or (f"same config as {row['repeats_config_of']}" if row.get("repeats_config_of") else "")
        lines.append(f"| {rank} | {row['trial_id']} | {start} | {pct(row['objective'])} ± "
                     f"{pct(row['objective_se'])} | {pct(row['tune_accuracy'])} | {pct(row['tune_accuracy_cv'])} | "
                     f"{pct(row['tune_auroc'])} | {pct(row['gate_accuracy'])} | " + " | ".join(cells) + " |")
    importance = summary.get("importance")
    if importance is not None:
        lines += ["", "## Which settings mattered", ""]
        if importance["values"]:
            lines += [f"Share of the objective's variance over these trials explained by each parameter "
                      f"({importance['evaluator']}; parameters set in every trial). Few trials make this rough.", "",
                      "| parameter | importance |", "|---|---|"]
            lines += [f"| {key} | {value:.3f} |" for key, value in importance["values"].items()]
            if importance.get("plot"):
                lines += ["", "![objective against the top parameters](importance.png)"]
        else:
            lines.append("Too few finished trials (or a constant objective) to rank the parameters.")
    lines += placement_lines(summary, done)
    if failed:
        lines += ["", "## Failed trials", "", "| trial | error |", "|---|---|"]
        lines += [f"| {row['trial_id']} | {row['error'].replace('|', '/')} |" for row in failed]
    write_text_atomic(path, "\n".join(lines) + "\n")
