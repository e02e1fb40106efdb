"""Write one evaluation's files: metrics.json, report.md, plots."""
from __future__ import annotations

from pathlib import Path

from hdmap.evaluation.report import plot_anomaly_grid, plot_scores, write_metrics, write_report
from hdmap.run.domain_data import DomainData


def write_run_outputs(out: str | Path, metrics: dict, data: DomainData, outputs: dict,
                      command: str | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out, metrics)
    scores = outputs["scores"].numpy()
    holdout = data.split.holdout
    figures = plot_scores(out, scores[holdout], data.test_labels[holdout],
                          [data.test_conditions[i] for i in holdout], metrics["tune"]["threshold"],
                          f"{metrics['model']} domain {data.domain}")
    figures += plot_anomaly_grid(out, data.test_maps, outputs["patch_maps"], scores, data.test_labels,
                                 data.test_conditions, holdout)
    return write_report(out, metrics, figures, command)
