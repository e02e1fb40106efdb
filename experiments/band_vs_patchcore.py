"""Is a deep feature needed at all? The band detector alone (`hdmap fit-eval --model band`), PatchCore alone (its
defaults with `--set model.fusion=none`, `--backbone tf_efficientnet_lite0`) and the two scores fused (`--set model.fusion=sum|max`), on the
synthetic study sets (domain C at three fault contrasts x two data seeds) and on sets whose defects are NOT bands
(bright spots; a stretch of a meshing ridge missing).

Protocol: every choice is made on tune numbers. Step 1 scores a grid of band settings on every set and takes the
one with the best mean tune AUROC as the band defaults. Step 2 runs the four detectors (band with those settings)
and reports holdout AUROC and accuracy with 95 % intervals and the paired differences (`hdmap compare`: paired
bootstrap of AUROC) against PatchCore alone; the fusion the PatchCore defaults get (none, sum or max) is the one with
the best mean tune AUROC.

    python experiments/band_vs_patchcore.py                     # ~1.5 h on a 2-core CPU (PatchCore fits)
    python experiments/band_vs_patchcore.py --sets "hard-cold C" --seeds 11 --workers 1
    python experiments/band_vs_patchcore.py --data-root ROOT    # your data: DINOv2 ViT-S/14 by name
Writes experiments/results/band_vs_patchcore.md; the runs stay under --storage (default runs/band_vs_patchcore).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hdmap.config import merge, plain
from hdmap.data.domain import load_domain
from hdmap.data.synth import SynthConfig
from hdmap.data.synthetic_default import ensure_synthetic
from hdmap.evaluation.compare import compare_runs
from hdmap.evaluation.results_file import markdown_table, pct, stamp, write_results
from hdmap.features.backbones import OFFLINE_BACKBONE
from hdmap.jobs.fit_eval import DataOptions, fit_eval
from hdmap.kinds.registry import default_config, settings_of, validate
from hdmap.models.band import BandConfig
from hdmap.run import band_pipeline
from synthetic_sets import DATA_SEEDS, N_TEST, N_TRAIN, SETS, describe_sets, set_root

RESULTS = Path(__file__).resolve().parent / "results"
OTHER_DEFECTS = {"spots C": "spot", "missing ridge C": "ridge"}  # sets whose defects are not bands
# Step 1: the band settings compared on tune (the rest of BandConfig as it is)
BAND_GRID = {"polarity": ["bright", "both"], "compare_neighbours": [False, True],
             "runs": [[1.0], [1.0, 0.5], [1.0, 0.5, 0.25], [0.5, 0.25]], "detrend": ["column_profile", "train_mean"]}
DETECTORS = ("band", "PatchCore alone", "fused sum", "fused max")  # PatchCore alone: its defaults, model.fusion=none


def other_root(name: str, seed: int) -> str:
    return str(ensure_synthetic(SynthConfig(n_train=N_TRAIN, n_test=N_TEST, seed=seed, domains="C",
                                            defect=OTHER_DEFECTS[name])))


def band_candidates() -> list[dict]:
    return [dict(zip(BAND_GRID, values)) for values in itertools.product(*BAND_GRID.values())]


def band_tune_grid(root: str, split_path: Path) -> list[dict]:
    """Tune AUROC of every band candidate on one set (seconds each: no backbone)."""
    data = load_domain(root, "C", split_path)
    rows = []
    for band in band_candidates():
        config = settings_of(merge(default_config(model_name="band"), {"band": band}))
        _, _, metrics = band_pipeline.fit_and_score(config, data, tune_only=True)
        rows.append({"band": band, "tune_auroc": metrics["tune"]["auroc"], "se": metrics["tune"]["se"]["auroc"]})
    return rows


def run_detectors(task: tuple) -> dict:
    """The four detectors on one set (fit-eval run folders under `out`); returns their metrics and comparisons."""
    label, root, out, band, real_data, backbone = task
    torch.set_num_threads(1)
    out = Path(out)
    split = out / "split.json"
    load_domain(root, "C", split)  # one split for every detector of this set
    patchcore = default_config(real_data=real_data, backbone=backbone)
    configs = {"band": merge(default_config(model_name="band"), {"band": band}),
               "PatchCore alone": merge(patchcore, {"model": {"fusion": "none"}}),
               "fused sum": merge(patchcore, {"model": {"fusion": "sum", "fusion_weight": 0.5, "band": band}}),
               "fused max": merge(patchcore, {"model": {"fusion": "max", "band": band}})}
    metrics = {}
    for name, config in configs.items():
        folder = out / name.replace(" ", "_")
        config = validate(config)
        saved = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else None
        if saved is None or saved["config"] != json.loads(json.dumps(config)):  # reuse a run of these settings only
            fit_eval(config, DataOptions(data_root=root, split=str(split)), folder, overwrite=True,
                     command=f"band_vs_patchcore.py: {name}", progress=False)
        metrics[name] = json.loads((folder / "metrics.json").read_text())
    reference = out / "PatchCore_alone"
    paired = {name: compare_runs(out / name.replace(" ", "_"), reference) for name in configs
              if name != "PatchCore alone"}
    return {"label": label, "metrics": metrics, "paired": paired}


def interval(metrics: dict, key: str) -> str:
    value, (low, high) = metrics["holdout"][key], metrics["holdout"]["intervals"][key]
    return f"{pct(value):.1f} [{pct(low):.1f}, {pct(high):.1f}]"


def difference(paired: dict | None) -> str:
    if paired is None:
        return "-"
    r = paired["auroc"]
    low, high = r["interval"]
    return f"{100 * r['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def plot(results: list[dict], path: Path) -> str:
    """Holdout AUROC with its 95 % interval per set and detector (bars), written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(results)), 3.8))
    width = 0.8 / len(DETECTORS)
    for k, name in enumerate(DETECTORS):
        values = [100 * r["metrics"][name]["holdout"]["auroc"] for r in results]
        low = [v - 100 * r["metrics"][name]["holdout"]["intervals"]["auroc"][0] for v, r in zip(values, results)]
        high = [100 * r["metrics"][name]["holdout"]["intervals"]["auroc"][1] - v for v, r in zip(values, results)]
        ax.bar([i + (k - 1.5) * width for i in range(len(results))], values, width, yerr=[low, high], capsize=2,
               label=name)
    ax.set_xticks(range(len(results)), [r["label"].replace(" seed ", "\nseed ") for r in results], fontsize=7)
    ax.set_ylim(40, 101)
    ax.set_ylabel("holdout AUROC % (95 % CI)")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", help="your data (domain C); default: the synthetic study sets")
    parser.add_argument("--backbone", help="PatchCore's backbone preset (default: EfficientNet-Lite0 on the "
                                           "synthetic sets, DINOv2 ViT-S/14 on --data-root)")
    parser.add_argument("--sets", nargs="*", default=list(SETS) + list(OTHER_DEFECTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(DATA_SEEDS))
    parser.add_argument("--other-seeds", nargs="*", type=int, default=[DATA_SEEDS[0]],
                        help="data seeds of the sets whose defects are not bands")
    parser.add_argument("--workers", type=int, default=2, help="sets fitted at once (one CPU thread each)")
    parser.add_argument("--storage", default="runs/band_vs_patchcore")
    parser.add_argument("--out", default=str(RESULTS / "band_vs_patchcore.md"))
    args = parser.parse_args()
    storage = Path(args.storage)
    if args.data_root:
        sets = [("your data", args.data_root, storage / "your_data")]
        backbone, real = args.backbone, True
    else:
        sets = [(f"{name} seed {seed}", set_root(name, seed) if name in SETS else other_root(name, seed),
                 storage / f"{name.replace(' ', '_')}_seed{seed}")
                for name in args.sets for seed in (args.seeds if name in SETS else args.other_seeds)]
        backbone, real = args.backbone or OFFLINE_BACKBONE, True

    # step 1: the band defaults, from tune numbers
    grids = {}
    for label, root, out in sets:
        out.mkdir(parents=True, exist_ok=True)
        grids[label] = band_tune_grid(root, out / "split.json")
    means = [statistics.mean(grids[label][i]["tune_auroc"] for label, _, _ in sets)
             for i in range(len(band_candidates()))]
    order = sorted(range(len(means)), key=lambda i: -means[i])
    chosen = band_candidates()[order[0]]
    print(f"band settings chosen on tune: {chosen} (mean tune AUROC {100 * means[order[0]]:.1f} %)", flush=True)

    # step 2: the four detectors on every set
    tasks = [(label, root, str(out), chosen, real, backbone) for label, root, out in sets]
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        results = list(pool.map(run_detectors, tasks))

    tune_means = {name: statistics.mean(r["metrics"][name]["tune"]["auroc"] for r in results) for name in DETECTORS}
    fusion_pick = max(("PatchCore alone", "fused sum", "fused max"), key=lambda name: tune_means[name])
    lines = ["# Is a deep feature needed at all? Band detector vs PatchCore vs fused", ""]
    lines += stamp(", ".join(root for _, root, _ in sets), f"`{backbone}` (PatchCore)", not args.data_root)
    lines += ["", f"Sets: {describe_sets(args.seeds) if not args.data_root else args.data_root}; and, with the same "
                  f"sizes and seeds {args.other_seeds}, sets whose defects are not bands: bright spots of radius "
                  f"1.5-3 px (`hdmap synth --defect spot`) and a stretch of 8-16 rows of one meshing ridge missing "
                  f"(`--defect ridge`), contrast 1.69 (cold C's 1.3 squared).", "",
              "## Step 1: band settings chosen on tune", "",
              f"Grid {json.dumps(BAND_GRID)} on every set (the rest of BandConfig: "
              f"{json.dumps({k: v for k, v in plain(BandConfig()).items() if k not in BAND_GRID})}); "
              "the five best by mean tune AUROC over all sets:", ""]
    top = [{"band settings": json.dumps(band_candidates()[i]), "mean tune AUROC %": pct(means[i]),
            **{label: pct(grids[label][i]["tune_auroc"]) for label, _, _ in sets}} for i in order[:5]]
    lines += markdown_table(top, ["band settings", "mean tune AUROC %"] + [label for label, _, _ in sets])
    lines += ["", f"Chosen: `{json.dumps(chosen)}`.", "",
              "## Step 2: holdout, threshold from tune", "",
              "AUROC and accuracy with 95 % bootstrap intervals; \"vs PatchCore\": paired bootstrap difference of "
              "holdout AUROC against PatchCore alone on the same maps (points, 95 % CI).", ""]
    rows = []
    for r in results:
        for name in DETECTORS:
            m = r["metrics"][name]
            rows.append({"set": r["label"], "detector": name, "tune AUROC %": pct(m["tune"]["auroc"]),
                         "holdout AUROC % [95 % CI]": interval(m, "auroc"),
                         "holdout accuracy % [95 % CI]": interval(m, "accuracy"),
                         "cold AUROC %": pct(m["holdout"]["by_condition"]["cold"]["auroc"]),
                         "vs PatchCore (AUROC points)": difference(r["paired"].get(name)),
                         "fit + predict s": m["timing_s"]["fit"] + m["timing_s"]["predict"],
                         "features s": m["timing_s"]["features"]})
    lines += markdown_table(rows, list(rows[0]))
    picture = plot(results, Path(args.out).with_suffix(".png"))
    lines += ["", f"![holdout AUROC per set]({picture})", "", "Mean tune AUROC over the sets: " + ", ".join(f"{n} {pct(v):.1f} %" for n, v in tune_means.items())
              + f". The fusion of the PatchCore defaults chosen on tune (best mean tune AUROC of PatchCore alone, fused "
              f"sum and fused max): **{fusion_pick}**.", "",
              "Sets drawn with one data seed share their train maps (the contrast and the defect change only the "
              "faults), so their greedy coreset orders come from the on-disk coreset store after the first fit: "
              "the seconds above are those of a warm store except on the first set of each seed.", ""]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
