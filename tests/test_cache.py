import os
from pathlib import Path

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


def test_the_key_follows_the_maps_contents_not_their_time_stamps(synth_root, tmp_path):
    """A map rewritten with the same size and mtime (cp -p, rsync -a, tar) is a new key with new features; a
    touched but unchanged map, or the same maps under another folder, is the same key."""
    import shutil

    import tifffile

    folder = tmp_path / "copy"
    shutil.copytree(synth_root / "domain_C", folder / "domain_C")
    cache = FeatureCache(tmp_path / "cache", progress=False)
    transform = cache.transform_for(SPEC, 98, "aspect", "backbone")
    paths = _paths(folder, 3)
    first = cache.features(SPEC, transform, paths)
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    cache.features(SPEC, transform, paths)
    assert (cache.misses, cache.hits) == (1, 1)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    cache.features(SPEC, transform, _paths(moved, 3))
    assert (cache.misses, cache.hits) == (1, 2)
    before = os.stat(paths[1])
    tifffile.imwrite(paths[1], tifffile.imread(paths[1])[::-1].copy())  # new content, same size...
    os.utime(paths[1], ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the old mtime, as cp -p leaves it
    assert os.stat(paths[1]).st_size == before.st_size and os.stat(paths[1]).st_mtime_ns == before.st_mtime_ns
    again = cache.features(SPEC, transform, paths)
    assert (cache.misses, cache.hits) == (2, 2)
    assert not np.array_equal(first[0][1], again[0][1]) and np.array_equal(first[0][0], again[0][0])


def test_disabled_cache_computes_the_same_values(synth_root, tmp_path):
    on = FeatureCache(tmp_path / "cache", progress=False)
    off = FeatureCache(tmp_path / "unused", enabled=False, progress=False)
    transform = on.transform_for(SPEC, 98, "aspect", "backbone")
    a = on.features(SPEC, transform, _paths(synth_root, 3))
    b = off.features(SPEC, transform, _paths(synth_root, 3))
    assert np.allclose(a[1].astype(np.float32), b[1].astype(np.float32), atol=1e-2)
    assert not (tmp_path / "unused").exists()


def test_tap_sets_share_one_entry_and_one_pass_serves_the_prefetched_taps(synth_root, tmp_path):
    """The key leaves the taps out: a pass with prefetch taps extracts them all; a later tap set is a hit; each tap
    equals the same tap extracted alone (an independent cache), so sharing changes no number."""
    paths = _paths(synth_root, 12)
    tiny = BackboneSpec(**{**SPEC.__dict__, "taps": (1,)})
    cache = FeatureCache(tmp_path / "shared", progress=False, prefetch_taps=(0, 1))
    transform = cache.transform_for(tiny, 56, "aspect", "backbone")
    (tap1,) = cache.features(tiny, transform, paths)
    assert (cache.misses, cache.hits) == (1, 0)
    both = cache.features(SPEC, transform, paths)  # taps (0, 1): both from the first pass
    assert (cache.misses, cache.hits) == (1, 1) and len(list((tmp_path / "shared").glob("*/tap*.npy"))) == 2
    alone = FeatureCache(tmp_path / "alone", progress=False)
    (reference0,) = alone.features(BackboneSpec(**{**SPEC.__dict__, "taps": (0,)}), transform, paths)
    (reference1,) = alone.features(tiny, transform, paths)
    assert np.array_equal(both[0], reference0) and np.array_equal(both[1], reference1)
    assert np.array_equal(tap1, reference1)


def test_prefetch_skips_taps_of_another_stride(synth_root, tmp_path):
    """A CNN's taps of another stride need another input size (another key): a pass does not extract them."""
    cnn = BackboneSpec(name="resnet18", weights="none", taps=(1,))
    cache = FeatureCache(tmp_path / "cnn", progress=False, prefetch_taps=(1, 2))
    transform = cache.transform_for(cnn, 64, "aspect", "backbone")
    cache.features(cnn, transform, _paths(synth_root))
    assert [p.name for p in (tmp_path / "cnn").glob("*/tap*.npy")] == ["tap1.npy"]


def test_a_new_process_whose_features_are_cached_never_builds_the_backbone(synth_root, tmp_path, monkeypatch):
    """The backbone's stride and normalisation are recorded beside the cache; a fresh process (a Tune worker) that
    finds its features cached builds no backbone (and loads no weights)."""
    from hdmap.features import cache as cache_module

    cache = FeatureCache(tmp_path / "cache", progress=False)
    transform = cache.transform_for(SPEC, 98, "aspect", "backbone")
    first = cache.features(SPEC, transform, _paths(synth_root))
    monkeypatch.setattr(cache_module, "_BACKBONES", {})  # what a new process starts with
    monkeypatch.setattr(cache_module, "_GEOMETRY", {})
    monkeypatch.setattr(cache_module, "_VERIFIED", set())
    monkeypatch.setattr(cache_module, "build_backbone", lambda spec: (_ for _ in ()).throw(
        AssertionError("built a backbone on a cache hit")))
    fresh = FeatureCache(tmp_path / "cache", progress=False)
    again_transform = fresh.transform_for(SPEC, 98, "aspect", "backbone")
    again = fresh.features(SPEC, again_transform, _paths(synth_root))
    assert again_transform == transform and fresh.hits == 1
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_tap_sets_of_one_backbone_share_one_model(tmp_path):
    from dataclasses import replace

    cache = FeatureCache(tmp_path / "cache", progress=False)
    first = cache.backbone(SPEC, "cpu")
    other = cache.backbone(replace(SPEC, taps=(1,)), "cpu")
    assert other.model is first.model and other.taps == (1,) and first.taps == (0, 1)
    assert cache.backbone(replace(SPEC, model_kwargs={"depth": 3, "embed_dim": 24, "num_heads": 2}),
                          "cpu").model is not first.model  # another model is another model


def test_a_full_disk_while_writing_an_entry_names_the_cache_and_leaves_no_partial_file(synth_root, tmp_path,
                                                                                      monkeypatch):
    import pytest

    from hdmap.features import npy_stream

    def full(descriptor, offset, length):
        raise OSError(28, f"No space left on device: {length} bytes requested")

    monkeypatch.setattr(npy_stream.os, "posix_fallocate", full)  # the disk is full when the file is reserved
    cache = FeatureCache(tmp_path / "cache", progress=False)
    transform = cache.transform_for(SPEC, 98, "aspect", "backbone")
    with pytest.raises(OSError, match=r"could not write the feature cache entry \(\[Errno 28\] No space left on device: \d+ bytes"):
        cache.features(SPEC, transform, _paths(synth_root))
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".partial" in p.name or p.suffix == ".npy"]


def test_a_tap_set_of_a_shared_model_is_checked_like_a_new_one(tmp_path):
    from dataclasses import replace

    import pytest

    from hdmap.config import ConfigError

    cache = FeatureCache(tmp_path / "cache", progress=False)
    cache.backbone(SPEC, "cpu")
    with pytest.raises(ConfigError, match=r"\[99\] not among the 2 blocks"):
        cache.backbone(replace(SPEC, taps=(0, 99)), "cpu")


def test_an_empty_hdmap_cache_is_the_default_folder_not_the_current_one(monkeypatch):
    from pathlib import Path

    from hdmap.features.cache import default_cache_dir

    monkeypatch.setenv("HDMAP_CACHE", "")
    assert default_cache_dir() == Path.home() / ".cache" / "hdmap" / "features"
    monkeypatch.setenv("HDMAP_CACHE", "/somewhere")
    assert default_cache_dir() == Path("/somewhere")


def test_the_cache_is_listed_capped_least_recently_used_first_and_cleared(tmp_path, monkeypatch, capsys):
    """HDMAP_CACHE_MAX_GB: after a write, the least recently used entries go until the cache fits (the new one
    stays); `hdmap cache list` shows each entry, `hdmap cache clear --older-than` removes the stale ones."""
    import os
    import time

    import numpy as np
    import tifffile

    from hdmap.cli.main import main
    from hdmap.features.backbones import BackboneSpec
    from hdmap.features.cache import FeatureCache
    from hdmap.features.cache_admin import entries, evict_over_cap

    maps = []
    for k in range(3):
        path = tmp_path / f"{k}.tiff"
        tifffile.imwrite(path, np.random.default_rng(k).random((31, 95)).astype(np.float32))
        maps.append(str(path))
    spec = BackboneSpec(name="dinov2_vits14", weights="none", taps=(0,),
                        model_kwargs={"depth": 1, "embed_dim": 24, "num_heads": 2})
    cache = FeatureCache(tmp_path / "cache", progress=False)
    for size in (56, 84, 112):  # three entries, written in this order
        cache.features(spec, cache.transform_for(spec, size, "aspect", "backbone"), maps)
        time.sleep(0.05)
    first, second, third = entries(tmp_path / "cache")
    os.utime(first["folder"] / "meta.json")  # the oldest is used again: now the second is least recently used
    total = first["bytes"] + second["bytes"] + third["bytes"]
    monkeypatch.setenv("HDMAP_CACHE_MAX_GB", str((total - 1) / 1e9))
    assert evict_over_cap(tmp_path / "cache", keep=third["key"]) == [second["key"]]  # one entry over: the LRU goes
    assert "removed 1 least recently used entry" in capsys.readouterr().err
    cache.features(spec, cache.transform_for(spec, 56, "aspect", "backbone"), maps)  # a hit: used now
    monkeypatch.setenv("HDMAP_CACHE_MAX_GB", "1e-9")  # a write over a tiny cap keeps only what it wrote
    cache.features(spec, cache.transform_for(spec, 140, "aspect", "backbone"), maps)
    assert len(entries(tmp_path / "cache")) == 1
    monkeypatch.delenv("HDMAP_CACHE_MAX_GB")
    for size in (56, 84):
        cache.features(spec, cache.transform_for(spec, size, "aspect", "backbone"), maps)
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert "3 entries" in listed and "dinov2_vits14, 56 px aspect" in listed
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "cache"), "--older-than", "1"]) == 0
    assert "removed 0 entries" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert entries(tmp_path / "cache") == []


def test_an_entry_written_batch_by_batch_is_the_file_np_save_writes(synth_root, tmp_path):
    """The cache fills each tap's file as maps are extracted (memory flat in the maps): byte-for-byte the file that
    saving the whole float16 array at once gives."""
    import io

    cache = FeatureCache(tmp_path / "cache", progress=False, batch_size=3)  # several batches, the last one short
    transform = cache.transform_for(SPEC, 98, "aspect", "backbone")
    grids = cache.features(SPEC, transform, _paths(synth_root))
    in_memory = FeatureCache(enabled=False, progress=False, batch_size=7).features(SPEC, transform, _paths(synth_root))
    for tap, grid, again in zip(SPEC.taps, grids, in_memory):
        assert grid.dtype == np.float16 and np.array_equal(grid, again)
        expected = io.BytesIO()
        np.save(expected, np.asarray(again))
        assert (grid.filename and Path(grid.filename).read_bytes()) == expected.getvalue()


def test_reading_a_cached_domain_leaves_its_pages_out_of_the_resident_memory(tmp_path, monkeypatch):
    """A fit reads every cached map once: the memory map's pages are released as it goes, so the fit's resident
    memory does not grow with the domain (a 100,000-map cache is tens of GB)."""
    import psutil

    from hdmap.features import feature_datamodule, npy_stream

    np.save(tmp_path / "tap.npy", np.ones((4000, 4, 40, 64), np.float16))  # 80 MB
    grid = np.load(tmp_path / "tap.npy", mmap_mode="r")
    process = psutil.Process()
    before = process.memory_info().rss
    assert float(grid[:2000].sum(dtype=np.float64)) > 0
    touched = process.memory_info().rss - before
    npy_stream.release_pages(grid[3])  # a view reaches its file's map
    assert touched > 30e6 and process.memory_info().rss - before < 0.25 * touched
    released = []
    monkeypatch.setattr(feature_datamodule, "release_pages", released.append)
    dataset = feature_datamodule.GridDataset([grid], np.zeros((4000, 2, 2), np.float32), np.arange(600), {})
    for i in range(len(dataset)):
        dataset[i]
    assert len(released) == 600 // npy_stream.RELEASE_EVERY
