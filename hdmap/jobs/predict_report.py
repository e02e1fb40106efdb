"""What `hdmap predict` writes beside predictions.csv: summary.md (counts, the threshold and where it came from, the
flagged maps with their rows), a histogram of the scores against the threshold, and anomaly-map images of flagged
maps with the named row marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FLAGGED_ROWS_LISTED = 50


def plot_histogram(folder: Path, scores: np.ndarray, threshold: float) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 3.5))
    axis.hist(scores, bins=min(60, max(10, len(scores) // 10)), color="tab:blue", alpha=0.8)
    axis.axvline(threshold, color="tab:red", label=f"threshold (tune) {threshold:.4g}")
    axis.set_xlabel("score")
    axis.set_ylabel("maps")
    axis.legend()
    fig.tight_layout()
    fig.savefig(folder / "scores.png", dpi=110)
    plt.close(fig)
    return ["scores.png"]


def plot_flagged(folder: Path, images: list[tuple[str, np.ndarray, np.ndarray, int]]) -> None:
    """One PNG per flagged map: the map and its anomaly map, the named row marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for path, map_, anomaly, row in images:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.2))
        left.imshow(map_, aspect="auto", cmap="viridis")
        left.set_title(Path(path).name, fontsize=8)
        right.imshow(anomaly, aspect="auto", cmap="magma",
                     extent=(-0.5, map_.shape[1] - 0.5, map_.shape[0] - 0.5, -0.5))
        right.set_title("anomaly map", fontsize=8)
        for axis in (left, right):
            axis.axhline(row, color="white", linestyle="--", linewidth=0.8)
        fig.tight_layout()
        fig.savefig(folder / f"{Path(path).stem}.png", dpi=90)
        plt.close(fig)


def summary_markdown(options, run, extra: dict, threshold: float, collected, notes: list[str],
                     figures: list[str]) -> str:
    n, flagged = len(collected.scores), len(collected.flagged)
    lines = ["# Predictions", ""]
    if options.command:
        lines += [f"Command: `{options.command}`", ""]
    lines += [f"- run: `{options.checkpoint}` (model kind `{run.model_name}`, domain {extra.get('domain')} of "
              f"`{extra.get('data_root')}`)",
              f"- threshold: {threshold:.6g}, the run's own (chosen on its tune maps); a map is anomalous when its "
              f"score is at least that",
              f"- maps scored: {n}; anomalous: {flagged} ({100 * flagged / n:.1f} %); skipped: "
              f"{len(collected.skipped)}",
              "- row: where the strongest anomaly lies (rows are the meshing positions of one gear: the row of a "
              "band is the position of the damaged tooth); col_start..col_end: the columns it covers", ""]
    if collected.in_train:
        lines += [f"- {collected.in_train} map(s) were train references of the run (their scores are no "
                  f"prediction; marked in predictions.csv)", ""]
    lines += [f"- note: {note}" for note in notes] + ([""] if notes else [])
    lines += [f"![{name}]({name})" for name in figures] + [""]
    if flagged:
        lines += ["## Anomalous maps", "", "| map | score | condition | row | columns |", "|---|---|---|---|---|"]
        lines += [f"| {Path(r['path']).name} | {float(r['score']):.4g} | {r['condition']} | {r['row']} | "
                  f"{r['col_start']}-{r['col_end']} |" for r in collected.flagged[:FLAGGED_ROWS_LISTED]]
        if flagged > FLAGGED_ROWS_LISTED:
            lines.append(f"| ... {flagged - FLAGGED_ROWS_LISTED} more in predictions.csv | | | | |")
        lines.append("")
        if collected.images:
            lines += [f"Anomaly maps of the first {len(collected.images)} anomalous maps: `flagged/`.", ""]
    if collected.skipped:
        lines += ["## Skipped (--skip-bad)", ""] + [f"- {why}" for why in collected.skipped] + [""]
    return "\n".join(lines)
