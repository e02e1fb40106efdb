"""metrics.json (the contract of DESIGN section 3), report.md generated from it, and plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hdmap.atomic_files import atomic_path, write_text_atomic
from hdmap.condition_names import CONDITIONS


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over all thresholds."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    order = np.argsort(-scores, kind="mergesort")
    labels = labels[order]
    tpr = np.r_[0.0, np.cumsum(labels) / max(labels.sum(), 1)]
    fpr = np.r_[0.0, np.cumsum(1 - labels) / max((1 - labels).sum(), 1)]
    return fpr, tpr


def write_metrics(out_dir: str | Path, metrics: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    write_text_atomic(path, json.dumps(metrics, indent=2, default=float))
    return path


def plots_available() -> bool:
    """Whether matplotlib is installed (a bare GPU machine may lack it: runs then skip their plots, said)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot_scores(out_dir: str | Path, scores, labels, conditions, threshold: float, title: str) -> list[str]:
    """Score histograms by label x condition (with the tune threshold) and the ROC curve; returns file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, labels, conditions = np.asarray(scores), np.asarray(labels), np.asarray(conditions)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(scores.min(), scores.max(), 40)
    for label, name in ((0, "good"), (1, "fault")):
        for condition, style in (("cold", "-"), ("warm", "--")):
            part = (labels == label) & (conditions == condition)
            if part.any():
                left.hist(scores[part], bins=bins, histtype="step", linestyle=style, linewidth=1.5,
                          color="tab:blue" if label == 0 else "tab:red", label=f"{name} {condition} (n={part.sum()})")
    left.axvline(threshold, color="black", linewidth=1, label="tune threshold")
    left.set_xlabel("anomaly score")
    left.set_ylabel("maps")
    left.legend(fontsize=8)
    left.set_title(f"{title}: holdout scores")
    fpr, tpr = roc_curve(scores, labels)
    right.plot(fpr, tpr, label="all")
    for condition in CONDITIONS:
        part = conditions == condition
        if part.any() and len(set(labels[part])) == 2:
            right.plot(*roc_curve(scores[part], labels[part]), label=condition)
    right.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    right.set_xlabel("false positive rate")
    right.set_ylabel("true positive rate")
    right.set_title("holdout ROC")
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(out_dir) / "scores.png") as target:
        fig.savefig(target, dpi=110)
    plt.close(fig)
    return ["scores.png"]


def percent(value) -> str:
    """A fraction as a percentage with one decimal; n/a when missing or not finite."""
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.1f}"


def with_interval(value, interval) -> str:
    """`96.1 [93.6, 98.2]`: a percentage and its 95 % interval (tables)."""
    return percent(value) + (f" [{percent(interval[0])}, {percent(interval[1])}]" if interval else "")


def with_console_interval(value, interval) -> str:
    """`96.1 % [95 % CI 93.6-98.2]`: a percentage and its 95 % interval (console lines)."""
    return f"{percent(value)} %" + (f" [95 % CI {percent(interval[0])}-{percent(interval[1])}]" if interval else "")


def holdout_rows(hold: dict) -> list[dict]:
    """One row per holdout subset (all, then each condition): n, AUROC and accuracy with their 95 % intervals."""
    intervals = hold.get("intervals") or {}
    rows = [{"subset": "all", "n": hold["n"], "auroc": with_interval(hold["auroc"], intervals.get("auroc")),
             "accuracy": with_interval(hold["accuracy"], intervals.get("accuracy"))}]
    for name, part in hold["by_condition"].items():
        ci = (intervals.get("by_condition") or {}).get(name, {})
        rows.append({"subset": name, "n": part.get("n", ""), "auroc": with_interval(part["auroc"], ci.get("auroc")),
                     "accuracy": with_interval(part["accuracy"], ci.get("accuracy"))})
    return rows



def _se(tune: dict, key: str) -> str:
    se = (tune.get("se") or {}).get(key)
    return percent(tune.get(key)) + (f" ± {percent(se)}" if se is not None else "")


def write_report(out_dir: str | Path, metrics: dict, figures: list[str] = (), command: str | None = None) -> Path:
    """report.md generated from metrics.json."""
    hold, tune = metrics["holdout"], metrics["tune"]
    lines = [f"# {metrics['model']} on domain {metrics['domain']}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    if metrics.get("clip"):  # FE-CLIP: which CLIP really ran
        lines += [f"CLIP: {metrics['clip']}", ""]
    intervals = hold.get("intervals") or {}
    lines += ["Holdout numbers use the threshold chosen on the tune split (max accuracy); `oracle accuracy` picks the",
              "best threshold on holdout itself and is shown only for comparison with earlier tables. Brackets: 95 %",
              "bootstrap intervals" + (f" ({intervals['method']}, {intervals['n_boot']} draws, seed {intervals['seed']})"
                                       if intervals else "") + "; tune ± standard error.", "",
              "| split | n | AUROC % | accuracy % | cross-fitted accuracy % | oracle accuracy % | AP % | F1 % |",
              "|---|---|---|---|---|---|---|---|",
              f"| tune | {tune.get('n', '')} | {_se(tune, 'auroc')} | {_se(tune, 'accuracy')} | "
              f"{_se(tune, 'accuracy_cv')} | | | |",
              f"| holdout | {hold['n']} | {with_interval(hold['auroc'], intervals.get('auroc'))} | "
              f"{with_interval(hold['accuracy'], intervals.get('accuracy'))} | | {percent(hold['accuracy_oracle'])} | "
              f"{percent(hold['ap'])} | {percent(hold['f1'])} |", "",
              "| holdout subset | n | AUROC % | accuracy % (tune threshold) |", "|---|---|---|---|"]
    lines += [f"| {r['subset']} | {r['n']} | {r['auroc']} | {r['accuracy']} |" for r in holdout_rows(hold)[1:]]
    gate = metrics.get("gate") or {}
    lines += ["", f"Gate: `{gate.get('kind')}`, accuracy on test: {percent(gate.get('accuracy'))} %"
              + (f"; train conditions from: {gate['train_assignment']}" if gate.get("train_assignment") else ""), ""]
    where = metrics.get("location")
    if where and where.get("n"):
        low, high = where["interval"]
        lines += [f"Fault location (fault_truth.csv): the named row is within {where['tolerance_rows']} row of a true "
                  f"band row for {where['hits']} of {where['n']} {where['of']}: {100 * where['row_hit_rate']:.1f} % "
                  f"[{100 * low:.1f}, {100 * high:.1f}] (row from the {where['row_from']})", ""]
    if metrics.get("test_conditions_from"):
        lines += ["Test-map conditions from: " + ", ".join(f"{source} {n}" for source, n in
                                                      metrics["test_conditions_from"].items()), ""]
    lines += [f"- note: {note}" for note in metrics.get("notes", [])] + ([""] if metrics.get("notes") else [])
    if metrics.get("devices"):
        lines += ["Devices: " + ", ".join(f"{k} {v}" for k, v in metrics["devices"].items() if v), ""]
    lines += [f"Threshold (from tune): {tune['threshold']:.6g}", "",
              "Timing (s): " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.get("timing_s", {}).items()), "",
              "## Config", "", "```json", json.dumps(metrics.get("config", {}), indent=2, default=str), "```", ""]
    lines += [f"![{name}]({name})" for name in figures]
    path = Path(out_dir) / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def plot_anomaly_grid(out_dir: str | Path, maps, patch_maps, scores, labels, conditions, indices,
                      n: int = 4) -> list[str]:
    """Maps and their anomaly maps for the lowest-scored cold faults (misses) and highest-scored warm goods
    (false alarms) among `indices` (the holdout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    indices = np.asarray(indices)
    scores, labels, conditions = np.asarray(scores), np.asarray(labels), np.asarray(conditions)
    cold_faults = [i for i in indices[np.argsort(scores[indices])] if labels[i] == 1 and conditions[i] == "cold"][:n]
    warm_goods = [i for i in indices[np.argsort(-scores[indices])] if labels[i] == 0 and conditions[i] == "warm"][:n]
    picks = [("cold fault (lowest scores)", i) for i in cold_faults] + [("warm good (highest scores)", i)
                                                                         for i in warm_goods]
    if not picks:
        return []
    fig, axes = plt.subplots(len(picks), 2, figsize=(8, 1.6 * len(picks)), squeeze=False)
    for row, (title, i) in enumerate(picks):
        image = np.asarray(maps[i])
        heat = torch.as_tensor(patch_maps[i]).float()[None, None]
        heat = F.interpolate(heat, size=image.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
        axes[row][0].imshow(image, cmap="viridis", aspect="auto")
        axes[row][0].set_title(f"{title}: map #{i}, score {scores[i]:.3g}", fontsize=8)
        axes[row][1].imshow(heat, cmap="magma", aspect="auto")
        axes[row][1].set_title("anomaly map", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(Path(out_dir) / "anomaly_maps.png") as target:
        fig.savefig(target, dpi=100)
    plt.close(fig)
    return ["anomaly_maps.png"]
