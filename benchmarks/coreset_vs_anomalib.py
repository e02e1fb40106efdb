"""The first-trial cost of the greedy coreset: this project's greedy k-center selection against anomalib 2.7's
KCenterGreedy on the same patch features, the features a default trial's memory bank is built from.

    pip install -e ".[bench]"        # anomalib 2.7 (only this benchmark and patchcore_vs_anomalib.py need it)
    python benchmarks/coreset_vs_anomalib.py [--maps 50] [--ratio 0.1] [--threads 1] [--out FILE.md]
Both run on the CPU with `--threads` torch threads (a trial gets one per CPU). Coverage: the largest distance of
any patch to its nearest coreset member, in the full feature space (what k-center greedy minimises; lower is
better). Embedded synthetic data, offline EfficientNet-Lite0, the default settings.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def reference_patches(n_maps: int) -> torch.Tensor:
    """(patches, D) the default mixed bank is built from, for the first `n_maps` train references."""
    from hdmap.data.domain import load_domain
    from hdmap.data.synthetic_default import ensure_embedded_dataset
    from hdmap.features.cache import FeatureCache
    from hdmap.kinds.patchcore.kind import build_module
    from hdmap.kinds.registry import default_config, settings_of
    from hdmap.models.embedding import flatten_patches
    from hdmap.kinds.patchcore.settings import fit_condition_stats
    from hdmap.kinds.patchcore.pipeline import cached_features

    config = settings_of(default_config())
    with tempfile.TemporaryDirectory() as folder:
        data = load_domain(str(ensure_embedded_dataset()), "C", Path(folder) / "split.json")
        module = build_module(config)
        condition_stats = fit_condition_stats(module.core.config, data.train_maps)
        train_grids, _ = cached_features(config, data, FeatureCache(Path(folder) / "cache", progress=False),
                                         condition_stats, "cpu")
        plan = module.core.plan_fit(data.train_maps, condition_stats, module.core.global_features(train_grids))
        chosen = plan.references[:n_maps]
        grids = [torch.from_numpy(np.asarray(g[chosen], dtype=np.float32)) for g in train_grids]
        return flatten_patches(module.core.embed(grids, torch.from_numpy(data.train_maps[chosen])))


def coverage(patches: torch.Tensor, members: torch.Tensor) -> float:
    from hdmap.models.memory_bank import KnnIndex

    return float(KnnIndex(patches[members]).search(patches, 1)[0].max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--maps", type=int, default=50, help="reference maps whose patches are sampled")
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    try:
        from anomalib.models.components.sampling import KCenterGreedy
    except ImportError:
        print("benchmarks/coreset_vs_anomalib.py: anomalib is not installed (pip install -e \".[bench]\")")
        return 1
    from hdmap.data.synthetic_default import embedded_root
    from hdmap.evaluation.results_file import stamp, write_results
    from hdmap.models.coreset import greedy_coreset

    patches = reference_patches(args.maps)
    torch.set_num_threads(args.threads)
    rows = []
    start = time.perf_counter()
    ours = greedy_coreset(patches, args.ratio, seed=0, projection_dim=128)
    rows.append(("hdmap greedy_coreset (seeded projection to 128)", time.perf_counter() - start, ours))
    start = time.perf_counter()
    theirs = torch.as_tensor(KCenterGreedy(patches, args.ratio).select_coreset_idxs())
    rows.append(("anomalib 2.7 KCenterGreedy (sparse random projection)", time.perf_counter() - start, theirs))
    lines = ["# Greedy coreset: hdmap against anomalib's KCenterGreedy", ""]
    lines += stamp(str(embedded_root()), "`tf_efficientnet_lite0` (taps [2, 3]), default settings", True)
    lines += [f"- {args.maps} reference maps: {patches.shape[0]} patches x {patches.shape[1]} dims; ratio "
              f"{args.ratio}; torch threads {args.threads}", "",
              "| selection | seconds | members | coverage (largest patch-to-member distance) |", "|---|---|---|---|"]
    lines += [f"| {name} | {seconds:.1f} | {len(members)} | {coverage(patches, members):.3f} |"
              for name, seconds, members in rows]
    if args.out:
        write_results(args.out, lines)  # printed too
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
