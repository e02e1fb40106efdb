"""The disk a search's feature cache will need, said before it starts: the cache keeps one float16 entry per map and
input setting (input size, resize, normalisation, input normalisation; every tap the space can ask for at once), so
a search needs (bytes of one map's features) x (maps) x (input settings the space can reach). The bytes of one map
come from one backbone pass on one map at each input size."""
from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

FP16 = 2
INPUT_KEYS = ("image_size", "resize", "normalisation", "model.input_norm", "model.norm_percentile")


def reachable(space, base_config: dict, key: str) -> list:
    """The values `key` can take in the search: a choice's, a range's ends, else the base value."""
    param = next((p for p in space.params if p.key == key), None)
    if param is not None:
        return list(param.values)
    node = base_config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return [node]


_MEASURED: dict[str, int] = {}  # one backbone pass per input size in a process: the disk and GPU estimates share it


def bytes_per_map(cache, base_config: dict, taps: tuple[int, ...], image_size: int, resize: str) -> int:
    """float16 bytes of one map's features at this input size, every tap."""
    from hdmap.kinds.registry import settings_of

    key = json.dumps([base_config["backbone"], base_config.get("normalisation"), list(taps), image_size, resize],
                     sort_keys=True, default=str)
    if key in _MEASURED:
        return _MEASURED[key]
    run = settings_of({**base_config, "image_size": int(image_size), "resize": resize,
                       "backbone": {**base_config["backbone"], "taps": list(taps)}})
    transform = cache.transform_for(run.backbone, run.image_size, run.resize, run.normalisation, "cpu")
    x = transform.batch([np.random.rand(31, 95).astype("float32")])
    with torch.no_grad():
        grids = cache.backbone(run.backbone, "cpu")(x)
    _MEASURED[key] = int(sum(g.numel() for g in grids) * FP16)
    return _MEASURED[key]


def estimate(space, base_config: dict, taps: tuple[int, ...], n_maps: int, cache) -> dict:
    """{'settings': input settings reachable, 'largest_gb': the largest one, 'total_gb': all of them}."""
    sizes = {}
    for image_size, resize in itertools.product(reachable(space, base_config, "image_size"),
                                                reachable(space, base_config, "resize")):
        sizes[(image_size, resize)] = bytes_per_map(cache, base_config, taps, image_size, resize) * n_maps
    others = 1
    for key in ("normalisation", "model.input_norm"):
        others *= len(reachable(space, base_config, key))
    if "percentile" in reachable(space, base_config, "model.input_norm"):
        others += len(reachable(space, base_config, "model.norm_percentile")) - 1
    return {"settings": len(sizes) * others, "largest_gb": max(sizes.values()) / 1e9,
            "total_gb": sum(sizes.values()) * others / 1e9}


def say_cache_needs(space, base_config: dict, taps: tuple[int, ...], n_maps: int, cache_dir: Path,
                    enabled: bool = True) -> dict | None:
    """Print what the search's feature cache will hold at most, and the free disk there (a warning when short)."""
    if not enabled or "backbone" not in base_config:
        return None
    from hdmap.features.cache import FeatureCache

    needs = estimate(space, base_config, taps, n_maps, FeatureCache(cache_dir, progress=False))
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free / 1e9
    line = (f"[hdmap] feature cache: up to {needs['total_gb']:.1f} GB for this search ({needs['settings']} input "
            f"setting(s) x {n_maps} maps, float16; the largest {needs['largest_gb']:.1f} GB) in {cache_dir}, "
            f"{free:.0f} GB free there")
    if needs["total_gb"] > free:
        line += ": NOT ENOUGH if the search reaches every setting (choose another --cache-dir, or narrow the space)"
    print(line, file=sys.stderr)
    return {**needs, "free_gb": free}
