"""Which row (meshing position of the damaged tooth) a detector names for a fault, against the true band rows of
synthetic domain C sets: the row hit rate of the holdout faults flagged at the tune threshold (the named row within
one row of a true band row; hdmap/run/location.py), with 95 % Wilson intervals, per model kind and band family.

    python experiments/row_location.py                    # ~10 min on a 2-core CPU (PatchCore fits, cached features)
    python experiments/row_location.py --kinds band --families "synth bands"
Writes experiments/results/row_location.md. Sets: `hdmap synth` domain C, 200 train / 100 test maps per class, the
default contrast (cold bands x1.3) and the band families of experiments/band_families.py at contrast x0.6.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hdmap.data.domain import load_domain
from hdmap.data.synth import SynthConfig
from hdmap.data.synthetic_default import ensure_synthetic
from hdmap.evaluation.results_file import markdown_table, pct, stamp, write_results
from hdmap.features.backbones import OFFLINE_BACKBONE
from hdmap.features.cache import FeatureCache
from hdmap.kinds.registry import default_config, fit_and_score

from band_families import BAND_FAMILIES, N_TEST, N_TRAIN

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("band", "hdmap_patchcore", "patchcore")
SETS = [("synth bands", 1.0, 11), ("synth bands", 1.0, 12)] + [(family, 0.6, 11) for family in BAND_FAMILIES]
COLUMNS = ["family", "contrast", "seed", "kind", "row hit %", "95 % interval", "flagged faults", "row from",
           "holdout AUROC %"]


def run_set(family: str, contrast: float, seed: int, kinds: list[str], storage: Path) -> list[dict]:
    config = SynthConfig(n_train=N_TRAIN, n_test=N_TEST, seed=seed, domains="C", contrast_scale=contrast,
                         **BAND_FAMILIES[family])
    root = ensure_synthetic(config)
    split = storage / f"{family.replace(' ', '_')}_x{contrast}_seed{seed}.split.json"
    data = load_domain(str(root), "C", split)
    rows = []
    for kind in kinds:
        _, _, metrics = fit_and_score(default_config(model_name=kind), data, FeatureCache(progress=False))
        where = metrics["location"]
        low, high = where["interval"] or (None, None)
        rows.append({"family": family, "contrast": f"x{contrast:g}", "seed": seed, "kind": kind,
                     "row hit %": pct(where["row_hit_rate"]),
                     "95 % interval": f"[{pct(low):.1f}, {pct(high):.1f}]" if low is not None else None,
                     "flagged faults": where["n"], "row from": where["row_from"],
                     "holdout AUROC %": pct(metrics["holdout"]["auroc"])})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--families", nargs="+", default=None, help="band families (default: every set)")
    parser.add_argument("--storage", default="runs/row_location", help="where the splits are kept")
    parser.add_argument("--out", default=str(RESULTS / "row_location.md"))
    args = parser.parse_args(argv)
    storage = Path(args.storage)
    storage.mkdir(parents=True, exist_ok=True)
    rows = []
    for family, contrast, seed in SETS:
        if args.families is None or family in args.families:
            rows += run_set(family, contrast, seed, args.kinds, storage)
    lines = ["# Where is the fault? Row hit rate of flagged faults", ""]
    lines += stamp(f"{len(rows) // max(1, len(args.kinds))} synthetic domain C sets ({N_TRAIN} train / {N_TEST} test "
                   f"maps per class) in the synthetic data cache", f"`{OFFLINE_BACKBONE}` (the PatchCore kinds' "
                   f"defaults)", True)
    lines += ["", "Each kind with its defaults (`hdmap fit-eval --model KIND`). Row hit: the named row within 1 row of "
              "a true band row (fault_truth.csv), over the holdout faults flagged at the tune threshold; interval: "
              "95 % Wilson. `row from`: the band detector's strongest row where the model has one, else the maximum "
              "of the anomaly map upsampled to the map (PatchCore's patch grid is a few rows tall at the default "
              "input size).", ""]
    lines += markdown_table(rows, COLUMNS)
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
