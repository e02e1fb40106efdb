"""Write one evaluation's files: metrics.json, report.md, plots (where matplotlib is installed: a bare GPU machine
may lack it; the report then says the plots were skipped)."""
from __future__ import annotations

from pathlib import Path

from hdmap.data.map_files import path_tail
from hdmap.evaluation.report import plot_anomaly_grid, plot_scores, plots_available, write_metrics, write_report
from hdmap.evaluation.scores_file import file_digest, write_scores
from hdmap.data.domain import DomainData


def write_run_outputs(out: str | Path, metrics: dict, data: DomainData, outputs: dict,
                      command: str | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics["test_fingerprint"] = data.fingerprints["test"]  # `hdmap compare` refuses runs on other maps
    scores = outputs["scores"].numpy()
    written = write_scores(out, [path_tail(i.path) for i in data.test], data.test_labels, data.test_conditions,
                           data.split.tune, scores)
    metrics["scores_sha256"] = file_digest(written)  # `hdmap compare` refuses a scores.csv edited since
    if not plots_available():
        metrics.setdefault("notes", []).append("plots skipped: matplotlib is not installed here")
    write_metrics(out, metrics)
    if not plots_available():
        return write_report(out, metrics, [], command)
    holdout = data.split.holdout
    figures = plot_scores(out, scores[holdout], data.test_labels[holdout],
                          [data.test_conditions[i] for i in holdout], metrics["tune"]["threshold"],
                          f"{metrics['model']} domain {data.domain}")
    figures += plot_anomaly_grid(out, data.test_maps, outputs["patch_maps"], scores, data.test_labels,
                                 data.test_conditions, holdout)
    return write_report(out, metrics, figures, command)
