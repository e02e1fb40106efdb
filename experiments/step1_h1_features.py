"""Step 1 — H1: do a backbone's patch features separate faint horizontal fault bands from normal rows?
Per backbone and tap, on domain C COLD maps: a bank of 16 cold train references (intensity gate); each test
patch's distance to it; patch AUROC of band patches (fault maps) vs all patches of cold good maps, and the ratio
of their mean distances. Band positions: `fault_truth.csv` when present (synthetic), else the row with the
largest excess over the good maps' profile (full width).

    python experiments/step1_h1_features.py                               # offline EfficientNet-Lite0 taps
    python experiments/step1_h1_features.py --data-root ROOT --backbones dinov2_vits14:3,6,9,11 \\
        clip_vit_b16:3,6,9,11 wide_resnet50_2:1,2,3                        # needs the weights (hub or file)
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from hdmap.data.splits import sample_per_condition
from hdmap.evaluation.metrics import auroc
from hdmap.evaluation.results_file import describe_backbone, markdown_table
from hdmap.features.backbones import BackboneSpec
from hdmap.features.cache import FeatureCache
from hdmap.gating.gates import build_gate, GateSettings
from hdmap.models.embedding import flatten_patches, patch_embedding
from hdmap.models.memory_bank import MemoryBank
from study import FAST_BACKBONE, Study, study_parser

COLUMNS = ["backbone", "tap", "grid", "patch AUROC %", "band / normal distance", "image AUROC % (max patch)"]


def band_boxes(data, study) -> dict[str, tuple]:
    """{fault file name: (row0, row1, col0, col1)} in map pixels."""
    table = Path(study.root) / f"domain_{data.domain}" / "fault_truth.csv"
    if table.exists():
        return {Path(r["path"]).name: (int(r["row"]), int(r["row"]) + int(r["width"]), int(r["col_start"]),
                                       int(r["col_end"])) for r in csv.DictReader(open(table))}
    cold = np.array(data.test_conditions) == "cold"
    profile = data.test_maps[(data.test_labels == 0) & cold].mean(axis=(0, 2))
    boxes = {}
    for item, array in zip(data.test, data.test_maps):
        if item.label == 1:
            row = int(np.argmax(array.mean(axis=1) / profile))
            boxes[Path(item.path).name] = (row, row + 1, 0, array.shape[1])
    return boxes


def token_mask(box: tuple, grid: tuple, shape: tuple) -> np.ndarray:
    """Tokens of a (h, w) grid whose pixel span overlaps the box."""
    (h, w), (rows, cols) = grid, shape
    r = np.arange(h)
    c = np.arange(w)
    row_hit = (r * rows / h < box[1]) & ((r + 1) * rows / h > box[0])
    col_hit = (c * cols / w < box[3]) & ((c + 1) * cols / w > box[2])
    return row_hit[:, None] & col_hit[None, :]


def main(argv=None) -> int:
    p = study_parser(__doc__, "step1_h1_features")
    p.add_argument("--backbones", nargs="+", default=None, help="name:tap,tap,... (default: offline Lite0 1,2,3)")
    p.add_argument("--shots", type=int, default=16)
    study = Study(p.parse_args(argv))
    data = study.domain()
    cache = FeatureCache(study.args.cache_dir, progress=False)
    if study.args.backbones:
        specs = [(name, [int(t) for t in taps.split(",")]) for name, taps in (b.split(":") for b in study.args.backbones)]
    elif study.args.fast:
        specs = [(FAST_BACKBONE["name"], [0, 1])]
    else:
        specs = [("tf_efficientnet_lite0", [1, 2, 3])]
    gate = build_gate(GateSettings("intensity"))
    assignment = gate.assign_train(torch.from_numpy(data.train_maps), None)
    names = np.array(["cold", "warm"])[assignment.numpy()]
    references = sample_per_condition(names, study.args.shots, 0)["cold"]
    cold = np.array(data.test_conditions) == "cold"
    good_idx, fault_idx = np.flatnonzero(cold & (data.test_labels == 0)), np.flatnonzero(cold & (data.test_labels == 1))
    boxes = band_boxes(data, study)
    rows = []
    jobs = [(name, tap) for name, taps in specs for tap in taps]
    for name, tap in track(jobs, description="H1 backbones x taps"):
        kwargs = FAST_BACKBONE["model_kwargs"] if study.args.fast else {}
        weights = study.base["backbone"]["weights"] if name == study.base["backbone"]["name"] else "default"
        spec = BackboneSpec(name=name, weights=weights, taps=(tap,), model_kwargs=kwargs)
        try:
            transform = cache.transform_for(spec, study.base["image_size"], study.base["resize"],
                                            study.base["normalisation"])
            train = cache.features(spec, transform, [i.path for i in data.train])[0]
            test = cache.features(spec, transform, [i.path for i in data.test])[0]
        except Exception as error:  # a backbone without weights here: say so in the table
            rows.append({"backbone": name, "tap": tap, "grid": f"failed: {str(error).splitlines()[0][:80]}"})
            continue
        embed = lambda x: patch_embedding([torch.from_numpy(np.array(x))], 3)  # noqa: E731
        bank = MemoryBank().fit(flatten_patches(embed(train[references])), coreset_ratio=1.0)
        grid = tuple(test.shape[2:])
        distances = {}
        for index in np.r_[good_idx, fault_idx]:
            distances[index] = bank.patch_distances(flatten_patches(embed(test[index:index + 1]))).view(grid).numpy()
        normal = np.concatenate([distances[i].ravel() for i in good_idx])
        band = np.concatenate([distances[i][token_mask(boxes[Path(data.test[i].path).name], grid,
                                                       data.test_maps.shape[1:])] for i in fault_idx])
        scores = np.array([distances[i].max() for i in np.r_[good_idx, fault_idx]])
        labels = np.r_[np.zeros(len(good_idx)), np.ones(len(fault_idx))]
        rows.append({"backbone": name, "tap": tap, "grid": f"{grid[0]}x{grid[1]}",
                     "patch AUROC %": 100 * auroc(np.r_[normal, band], np.r_[np.zeros(len(normal)), np.ones(len(band))]),
                     "band / normal distance": f"{band.mean() / normal.mean():.3f}",
                     "image AUROC % (max patch)": 100 * auroc(scores, labels)})
    ran = "; ".join(describe_backbone(name, study.base["backbone"]["weights"] if name == study.base["backbone"]["name"]
                                      else "default", taps,
                                      FAST_BACKBONE["model_kwargs"] if study.args.fast else None)
                    for name, taps in specs)
    lines = study.header(f"Step 1 (H1): patch features vs faint bands, domain {data.domain} cold", ran)
    lines += [f"References: {study.args.shots} cold-gated train maps; cold test maps: {len(good_idx)} good, "
              f"{len(fault_idx)} fault (all of test, no threshold is chosen here).", ""]
    lines += markdown_table(rows, COLUMNS)
    study.write(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
