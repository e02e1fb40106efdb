"""Step 0 — data sanity: per domain and condition, intensity (mean, p90); how well p90 separates cold from
warm (the intensity gate); where fault bands sit (row with the largest excess over the good maps' profile).

    python experiments/step0_data_sanity.py [--data-root ROOT]
Writes experiments/results/step0_data_sanity.md and .png.
"""
from __future__ import annotations

import numpy as np
import torch

from hdmap.evaluation.metrics import auroc
from hdmap.evaluation.results_file import markdown_table
from hdmap.gating.gates import build_gate, GateSettings, gate_accuracy
from study import Study, study_parser

COLUMNS = ["domain", "subset", "n", "mean", "p90", "max"]
GATE_COLUMNS = ["domain", "p90 AUROC warm vs cold %", "intensity gate accuracy % (threshold from train)",
                "train share assigned warm %"]


def fault_rows(good: np.ndarray, fault: np.ndarray) -> np.ndarray:
    """Per fault map, the row whose mean most exceeds the good maps' mean row profile."""
    profile = good.mean(axis=(0, 2))
    return np.argmax(fault.mean(axis=2) / profile, axis=1)


def main(argv=None) -> int:
    p = study_parser(__doc__, "step0_data_sanity")
    p.add_argument("--domains", default="ABCD")
    study = Study(p.parse_args(argv))
    stats, gates, rows_by_domain = [], [], {}
    for domain in study.args.domains:
        data = study.domain(domain)
        conditions = np.array(data.test_conditions)
        subsets = {"train": data.train_maps}
        for label, name in ((0, "good"), (1, "fault")):
            for condition in ("cold", "warm"):
                subsets[f"test {name} {condition}"] = data.test_maps[(data.test_labels == label) & (conditions == condition)]
        for subset, maps in subsets.items():
            if len(maps):
                stats.append({"domain": domain, "subset": subset, "n": len(maps), "mean": f"{maps.mean():.3f}",
                              "p90": f"{np.percentile(maps, 90):.3f}", "max": f"{maps.max():.2f}"})
        p90 = np.percentile(data.test_maps.reshape(len(data.test_maps), -1), 90, axis=1)
        gate = build_gate(GateSettings("intensity"))
        assignment = gate.assign_train(torch.from_numpy(data.train_maps), None)
        routed, _ = gate.route(torch.from_numpy(data.test_maps), None)
        gates.append({"domain": domain, "p90 AUROC warm vs cold %": 100 * auroc(p90, (conditions == "warm").astype(int)),
                      "intensity gate accuracy % (threshold from train)": 100 * gate_accuracy(routed, data.test_conditions),
                      "train share assigned warm %": 100 * float(assignment.float().mean())})
        cold = conditions == "cold"
        rows_by_domain[domain] = fault_rows(data.test_maps[(data.test_labels == 0) & cold],
                                            data.test_maps[(data.test_labels == 1) & cold])
    lines = study.header("Step 0: data sanity")
    lines += ["## Intensity per domain and subset", ""] + markdown_table(stats, COLUMNS)
    lines += ["", "## Cold / warm separability (p90 of each map)", ""] + markdown_table(gates, GATE_COLUMNS)
    lines += ["", "## Where cold faults sit", "",
              "Histogram of the row with the largest mean excess over the cold good maps' row profile (a proxy",
              "for the band row where no masks exist).", "", f"![rows]({study.out.with_suffix('.png').name})", ""]
    plot(rows_by_domain, study.out.with_suffix(".png"))
    study.write(lines)
    return 0


def plot(rows_by_domain: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows_by_domain), figsize=(3.5 * len(rows_by_domain), 2.8), squeeze=False)
    for ax, (domain, rows) in zip(axes[0], rows_by_domain.items()):
        ax.hist(rows, bins=np.arange(rows.max() + 2) - 0.5 if len(rows) else 10)
        ax.set_title(f"domain {domain}: cold faults")
        ax.set_xlabel("brightest-excess row")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
