"""How the memory bank is chosen, side by side: which candidate keeps a fit linear in the train maps without
losing what exact greedy gives.

    python benchmarks/coreset_candidates.py --data-root ROOT [--data-root ROOT2 ...] [--sizes 2500 5000 10000]
        [--store DIR] [--out benchmarks/results/coreset_candidates.md]

Part 1, patches: on the reference patches of the default fit of the first ROOT (domain C), each candidate at each bank
size: seconds (this CPU, torch's threads) and coverage (the largest distance of a reference patch to its nearest
member, full dimension; what k-center minimises, lower is better). Exact greedy's seconds are its measured per-pick
cost times the picks (each of its picks costs the same); its members come from the coreset store when `--store`
holds its order (a default fit with the features cache fills it), else they are computed.
Part 2, detection: `hdmap fit-eval`'s defaults with fusion off (PatchCore alone: the bank is all it has) on each ROOT,
the bank chosen by exact greedy and by composable greedy at each size: holdout AUROC with its 95 % interval, and the
fit and predict seconds (metrics.json timing_s). Offline EfficientNet-Lite0. Exact greedy runs the largest size
first: the smaller banks are prefixes of its order and come from the coreset store, as does any set whose train maps
an earlier set shared (synthetic sets of one seed share them), so their fit seconds are not exact greedy's cost
(part 1's are).

The sets of benchmarks/results/coreset_candidates.md (400 train, 200 + 200 test maps; standard bands, faint bands,
a missing ridge):
    hdmap synth S400 --n-train 400 --n-test 200 --domains C
    hdmap synth F400 --seed 12 --n-train 400 --n-test 200 --domains C --contrast-scale 0.6
    hdmap synth R400 --n-train 400 --n-test 200 --domains C --defect ridge
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

EXACT_TIMED_PICKS = 300


def reference_patches(root: str, cache_dir: str) -> torch.Tensor:
    """(patches, D) that the default fit's mixed bank is chosen from, on `root` domain C."""
    from hdmap.data.domain import load_domain
    from hdmap.features.cache import FeatureCache
    from hdmap.jobs.fit_eval import resolve_config
    from hdmap.kinds.patchcore.kind import build_module
    from hdmap.models.embedding import flatten_patches
    from hdmap.kinds.patchcore.settings import fit_condition_stats
    from hdmap.kinds.patchcore.pipeline import cached_features

    config = resolve_config(root, None, None, [], "tf_efficientnet_lite0")
    with tempfile.TemporaryDirectory() as folder:
        data = load_domain(root, "C", Path(folder) / "split.json")
    module = build_module(config)
    condition_stats = fit_condition_stats(module.core.config, data.train_maps)
    train_grids, _ = cached_features(config, data, FeatureCache(cache_dir), condition_stats, "cpu")
    plan = module.core.plan_fit(data.train_maps, condition_stats, module.core.global_features(train_grids),
                                data.train_truth)
    parts = []
    for start in range(0, len(plan.references), 50):
        chosen = plan.references[start:start + 50]
        grids = [torch.from_numpy(np.asarray(g[chosen], dtype=np.float32)) for g in train_grids]
        parts.append(flatten_patches(module.core.embed(grids, torch.from_numpy(data.train_maps[chosen]))))
    return torch.cat(parts)


def coverage(patches: torch.Tensor, members: torch.Tensor) -> float:
    from hdmap.models.memory_bank import KnnIndex

    return float(KnnIndex(patches[members]).search(patches, 1)[0].max())


def timed(selection) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    members = selection()
    return time.perf_counter() - start, members


def patch_rows(patches: torch.Tensor, sizes: list[int], store_dir: str | None) -> list[dict]:
    from hdmap.models.coreset import GreedyOrder, composable_greedy
    from hdmap.models.coreset_store import CoresetStore

    n = len(patches)
    probe = GreedyOrder(patches, 0, 128)
    per_pick = timed(lambda: probe.extend(EXACT_TIMED_PICKS + 1))[0] / EXACT_TIMED_PICKS
    store = CoresetStore(store_dir) if store_dir else None
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    rows = []
    for size in sizes:
        exact = (store.coreset(patches, size, 0, 128) if store else GreedyOrder(patches, 0, 128).extend(size))
        candidates = [
            ("exact greedy (projection 128)", per_pick * size, exact),
            ("composable greedy (projection 128)", *timed(lambda: composable_greedy(patches, size, projection_dim=128))),
            ("composable greedy (projection 64): the default", *timed(lambda: composable_greedy(patches, size, projection_dim=64))),
            ("greedy over a random 4 x size subsample",
             *timed(lambda: shuffled[:4 * size][GreedyOrder(patches[shuffled[:4 * size]], 0, 128).extend(size)])),
            ("random sample (no greedy)", 0.0, shuffled[:size]),
        ]
        for name, seconds, members in candidates:
            rows.append({"bank size": size, "selection": name, "seconds": seconds,
                         "coverage": coverage(patches, members), "patches": n})
        print(rows[-5:], flush=True)
    exact_coverage = {r["bank size"]: r["coverage"] for r in rows if r["selection"].startswith("exact")}
    for row in rows:
        row["coverage / exact"] = f"{row['coverage'] / exact_coverage[row['bank size']]:.3f}"
        row["coverage"] = f"{row['coverage']:.3f}"
    return rows


def detection_rows(roots: list[str], sizes: list[int], cache_dir: str) -> list[dict]:
    from hdmap.jobs.fit_eval import DataOptions, fit_eval, resolve_config

    rows = []
    for root in roots:
        for method in ("greedy", "composable"):
            for size in sorted(sizes, reverse=True):  # exact greedy: the smaller banks are prefixes (store hits)
                sets = ["model.fusion=none", f"model.coreset_method={method}", f"model.bank_size={size}"]
                config = resolve_config(root, None, None, sets, "tf_efficientnet_lite0")
                with tempfile.TemporaryDirectory() as out:
                    metrics = fit_eval(config, DataOptions(root, "C"), out, cache_dir=cache_dir, progress=False)
                holdout, timing = metrics["holdout"], metrics["timing_s"]
                low, high = holdout["intervals"]["auroc"]
                rows.append({"data": Path(root).name, "selection": method, "bank size": size,
                             "tune AUROC %": f"{100 * metrics['tune']['auroc']:.1f}",
                             "holdout AUROC %": f"{100 * holdout['auroc']:.1f} [{100 * low:.1f}, {100 * high:.1f}]",
                             "features s": timing["features"], "fit s": timing["fit"],
                             "predict s": timing["predict"]})
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", action="append", required=True, help="a ROOT with domain_C (repeat for more)")
    p.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000])
    p.add_argument("--store", help="a coreset store folder holding exact greedy's order (FEATURE_CACHE/coresets)")
    p.add_argument("--cache-dir", help="the feature cache (default: hdmap's)")
    p.add_argument("--skip-detection", action="store_true")
    p.add_argument("--out", help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    from hdmap.evaluation.results_file import markdown_table, stamp, write_results
    from hdmap.features.cache import FeatureCache

    cache_dir = args.cache_dir or str(FeatureCache().root)
    patches = reference_patches(args.data_root[0], cache_dir)
    rows = patch_rows(patches, args.sizes, args.store)
    lines = ["# Choosing the memory bank: candidates side by side", ""]
    lines += stamp(", ".join(args.data_root), "`tf_efficientnet_lite0` (taps [2, 3]), default settings", True)
    lines += [f"- torch threads {torch.get_num_threads()}; {patches.shape[0]} reference patches x {patches.shape[1]} "
              f"dims (the default fit of {Path(args.data_root[0]).name}); exact greedy's seconds: "
              f"{EXACT_TIMED_PICKS} timed picks x the picks", "", "## Coverage and seconds", ""]
    lines += markdown_table(rows, ["bank size", "selection", "seconds", "coverage", "coverage / exact"])
    if not args.skip_detection:
        lines += ["", "## Detection: PatchCore alone (model.fusion=none), holdout AUROC with 95 % intervals", "",
                  "Exact greedy's smaller banks, and sets whose train maps an earlier set had, read its order from the "
                  "coreset store: their fit seconds are not its cost (part 1's are).", ""]
        lines += markdown_table(detection_rows(args.data_root, args.sizes, cache_dir),
                                ["data", "selection", "bank size", "tune AUROC %", "holdout AUROC %", "features s", "fit s",
                                 "predict s"])
    write_results(args.out, lines)  # printed too
    return 0


if __name__ == "__main__":
    sys.exit(main())
