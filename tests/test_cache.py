import os

import numpy as np

from hdmap.data.map_files import discover_domain
from hdmap.features.backbones import BackboneSpec
from hdmap.features.cache import FeatureCache

SPEC = BackboneSpec(name="dinov2_vits14", weights="none", taps=(0, 1),
                    model_kwargs={"depth": 2, "embed_dim": 24, "num_heads": 2})


def _paths(root, n=6):
    return [i.path for i in discover_domain(root, "C")["train"][:n]]


def test_hit_returns_identical_features_and_setting_change_misses(synth_root, tmp_path):
    cache = FeatureCache(tmp_path / "cache", progress=False)
    transform = cache.transform_for(SPEC, 98, "aspect", "backbone")
    first = cache.features(SPEC, transform, _paths(synth_root))
    again = FeatureCache(tmp_path / "cache", progress=False).features(SPEC, transform, _paths(synth_root))
    assert cache.misses == 1
    assert first[0].dtype == np.float16 and first[0].shape == (6, 24, 2, 7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = cache.transform_for(SPEC, 98, "nearest", "backbone")
    cache.features(SPEC, other, _paths(synth_root))
    assert cache.misses == 2 and cache.hits == 0


def test_changed_file_is_a_new_key(synth_root, tmp_path):
    import shutil
    folder = tmp_path / "copy"
    shutil.copytree(synth_root / "domain_C", folder / "domain_C")
    cache = FeatureCache(tmp_path / "cache", progress=False)
    transform = cache.transform_for(SPEC, 98, "aspect", "backbone")
    paths = _paths(folder, 3)
    cache.features(SPEC, transform, paths)
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cache.features(SPEC, transform, paths)
    cache.features(SPEC, transform, paths)
    assert (cache.misses, cache.hits) == (2, 1)


def test_disabled_cache_computes_the_same_values(synth_root, tmp_path):
    on = FeatureCache(tmp_path / "cache", progress=False)
    off = FeatureCache(tmp_path / "unused", enabled=False, progress=False)
    transform = on.transform_for(SPEC, 98, "aspect", "backbone")
    a = on.features(SPEC, transform, _paths(synth_root, 3))
    b = off.features(SPEC, transform, _paths(synth_root, 3))
    assert np.allclose(a[1].astype(np.float32), b[1].astype(np.float32), atol=1e-2)
    assert not (tmp_path / "unused").exists()
