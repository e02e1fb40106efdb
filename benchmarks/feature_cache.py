"""First feature extraction vs cached re-use on synthetic domain C (train + test maps).

    python benchmarks/feature_cache.py [--image-size 384] [--repeats 3]
Prints a table: seconds and maps/s for the first extraction (empty cache) and for cached re-use, and the ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from hdmap.data.synthetic_default import ensure_embedded_dataset
from hdmap.data.map_files import discover_domain
from hdmap.features.backbones import BackboneSpec
from hdmap.features.cache import FeatureCache


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    root = ensure_embedded_dataset()
    items = discover_domain(root, "C")
    paths = [i.path for i in items["train"] + items["test"]]
    spec = BackboneSpec(taps=(2, 3))
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder, progress=False)
        transform = cache.transform_for(spec, args.image_size, "aspect", "backbone")  # builds the model first
        start = time.perf_counter()
        cache.features(spec, transform, paths)
        first_s = time.perf_counter() - start
        reuse = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            again = FeatureCache(folder, progress=False).features(spec, transform, paths)
            _ = [np.asarray(a).sum(dtype=np.float64) for a in again]  # touch every byte of the memory-map
            reuse.append(time.perf_counter() - start)
    reuse_s = float(np.median(reuse))
    n = len(paths)
    print(f"synthetic domain C, {n} maps, tf_efficientnet_lite0 taps (2, 3), aspect {args.image_size}, "
          f"torch threads {torch.get_num_threads()}")
    print("| step | seconds | maps/s |\n|---|---|---|")
    print(f"| first extraction (empty cache) | {first_s:.2f} | {n / first_s:.1f} |")
    print(f"| cached re-use (median of {args.repeats}) | {reuse_s:.3f} | {n / reuse_s:.0f} |")
    print(f"ratio first / cached: {first_s / reuse_s:.0f}x")


if __name__ == "__main__":
    main()
