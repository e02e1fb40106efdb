"""Condition-invariant inputs and the band descriptor: train statistics only, per-map transforms, gate fallback."""
import copy
import shutil

import numpy as np
import pytest
import tifffile
import torch

from hdmap.kinds.registry import settings_of
from hdmap.data.condition_statistics import INPUT_NORMS, ConditionStatistics
from hdmap.statistics import ashman_d, held_out_projection, is_bimodal
from hdmap.data.domain import load_domain
from hdmap.features.cache import FeatureCache
from hdmap.kinds.registry import fit_and_score

OPTIONS = [{"input_norm": norm} for norm in INPUT_NORMS if norm != "none"] + [{"band_weight": 1.0}]


def _two_condition_maps(n=40, seed=0, warm_gain=1.4):
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.3, 0.8, 31)[:, None] * np.ones((1, 95))
    maps = np.stack([rows * (warm_gain if i % 2 else 1.0) * (1 + 0.03 * rng.standard_normal((31, 95)))
                     for i in range(n)]).astype(np.float32)
    return torch.from_numpy(maps)


@pytest.mark.parametrize("norm", ["percentile", "condition", "row_profile"])
def test_normalisations_remove_the_warm_gain_and_act_per_map(norm):
    maps = _two_condition_maps()
    stats = ConditionStatistics(norm).fit(maps)
    cold, warm = maps[0], maps[0] * 1.4  # the same map, warm
    out = stats.normalise(torch.stack([cold, warm]))
    assert torch.allclose(out[0], out[1], rtol=0.05, atol=0.02)
    assert not torch.allclose(cold, warm, rtol=0.05, atol=0.02)
    batch = stats.normalise(maps[:6])
    alone = torch.cat([stats.normalise(maps[i:i + 1]) for i in range(6)])
    assert torch.allclose(batch, alone)  # no statistic of the batch: each map on its own
    spike = maps[0].clone()
    spike[5, 5] = 20.0
    out = stats.normalise(spike[None])[0]
    assert out[5, 5] > 10 * out.median().abs()  # scaled, never clipped


def test_band_channel_lights_up_the_band_row():
    maps = _two_condition_maps()
    stats = ConditionStatistics(band_window=0.25).fit(maps)
    faulty = maps[2].clone()
    faulty[20, 10:60] *= 1.3  # a faint band on row 20 of a cold map
    channel = stats.band_channel(torch.stack([maps[2], faulty]), (8, 24))
    assert channel.shape == (2, 1, 8, 24)
    band_row = int(20 * 8 / 31)
    assert channel[1, 0, band_row].max() > channel[0, 0, band_row].max() + 3
    assert channel[1, 0, band_row].max() == channel[1].max()


def test_bimodality_test():
    two = torch.cat([torch.randn(100) * 0.1, torch.randn(100) * 0.1 + 2])
    split = (two > 1).long()
    assert is_bimodal(two, split)[0] and ashman_d(two)[0] > 10
    for seed in range(5):
        one = torch.randn(200, generator=torch.Generator().manual_seed(seed))
        assert not is_bimodal(one, (one > one.median()).long())[0], ashman_d(one)
    assert not is_bimodal(two, torch.zeros(200, dtype=torch.long))[0]


@pytest.mark.parametrize("dim", [16, 768])
def test_feature_bimodality_is_judged_on_maps_the_direction_was_not_fitted_on(dim):
    """Isotropic Gaussian features split at random: projected onto a direction fitted on the same maps they read as
    two groups (the old test); projected with the direction from the other half they do not. Two real clusters
    still do."""
    generator = torch.Generator().manual_seed(dim)
    noise = torch.randn(200, dim, generator=generator)
    groups = (torch.rand(200, generator=generator) < 0.5).long()
    direction = noise[groups == 1].mean(0) - noise[groups == 0].mean(0)
    if dim == 768:
        assert is_bimodal(noise @ direction, groups)[0]  # the in-sample projection fools the test
    assert not is_bimodal(*held_out_projection(noise, groups))[0]
    clusters = noise + 6.0 * groups[:, None].float() * torch.ones(dim) / dim ** 0.5
    assert is_bimodal(*held_out_projection(clusters, groups))[0]


def test_statistics_of_one_condition_are_shared_and_noted():
    maps = _two_condition_maps(warm_gain=1.0)
    stats = ConditionStatistics("row_profile").fit(maps)
    assert stats.notes and "not bimodal" in stats.notes[0]
    assert torch.equal(stats.condition_of(maps), torch.zeros(len(maps), dtype=torch.long))


@pytest.fixture(scope="module")
def swapped_test_root(synth_root, tmp_path_factory):
    """A copy of domain C with the same train maps and different test maps (each scaled and shifted)."""
    root = tmp_path_factory.mktemp("swapped")
    shutil.copytree(synth_root / "domain_C", root / "domain_C")
    for path in (root / "domain_C" / "test").rglob("*.tiff"):
        tifffile.imwrite(path, (tifffile.imread(path) * 2.5 + 0.3).astype(np.float32))
    return root


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_no_option_reads_test_maps_at_fit_time(option, tiny_config, synth_root, swapped_test_root,
                                               feature_cache, tmp_path):
    """Fitting on two domains that share train maps but not test maps gives the same fitted model."""
    fitted = []
    for root in (synth_root, swapped_test_root):
        data = load_domain(str(root), "C", tmp_path / f"{root.name}.json",
                           condition_csv=str(root / "domain_C" / "train_conditions.csv"),
                           condition_csv_partial=True)
        config = copy.deepcopy(tiny_config)
        config["model"].update({"bank_mode": "gated", **option})
        module, outputs, _ = fit_and_score(config, data, feature_cache)
        fitted.append((module.core.state_dict(), outputs))
    (first, out_a), (second, out_b) = fitted
    assert first.keys() == second.keys()
    same = {k: torch.equal(first[k], second[k]) or (first[k].is_floating_point() and  # unfitted NaN buffers too
                                                    torch.allclose(first[k], second[k], 0, 0, equal_nan=True))
            for k in first}
    assert all(same.values()), (option, [k for k, equal in same.items() if not equal])
    assert not torch.equal(out_a["scores"], out_b["scores"])  # the test maps did differ


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_option_changes_the_objective(option, tiny_config, domain_c, feature_cache):
    config = copy.deepcopy(tiny_config)
    _, base, _ = fit_and_score(config, domain_c, feature_cache)
    config["model"].update(option)
    _, changed, metrics = fit_and_score(config, domain_c, feature_cache)
    assert not torch.allclose(base["scores"], changed["scores"])
    assert metrics["config"]["model"] == {**tiny_config["model"], **option}


def test_normalised_model_reloads_and_scores_the_same(tiny_config, domain_c, feature_cache, tmp_path):
    from hdmap.models.checkpoint_files import lightning_checkpoint
    from hdmap.kinds.patchcore.module import PatchCoreModule
    from hdmap.kinds.patchcore.pipeline import score_saved_module

    config = copy.deepcopy(tiny_config)
    config["model"].update({"input_norm": "row_profile", "band_weight": 0.5})
    module, outputs, _ = fit_and_score(config, domain_c, feature_cache)
    torch.save(lightning_checkpoint(module), tmp_path / "m.ckpt")
    reloaded = PatchCoreModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu")
    again, _ = score_saved_module(reloaded, settings_of(config), domain_c, feature_cache)
    assert torch.allclose(again["scores"], outputs["scores"], rtol=1e-5)


def test_a_run_fits_its_input_preparation_once_and_hands_the_same_object_to_cache_and_model(
        tiny_config, domain_c, feature_cache, monkeypatch):
    """One fit on train maps; the feature cache normalises with that object and the model carries it."""
    fitted, normalised_with = [], []
    original_fit, original_normalise = ConditionStatistics.fit, ConditionStatistics.normalise
    monkeypatch.setattr(ConditionStatistics, "fit", lambda self, maps: fitted.append((self, len(maps))) or
                        original_fit(self, maps))
    monkeypatch.setattr(ConditionStatistics, "normalise", lambda self, maps: normalised_with.append(self) or
                        original_normalise(self, maps))
    config = copy.deepcopy(tiny_config)
    config["model"].update(input_norm="row_profile", band_weight=1.0)
    module, _, _ = fit_and_score(config, domain_c, FeatureCache(enabled=False, progress=False))
    assert [n for _, n in fitted] == [len(domain_c.train_maps)]
    assert normalised_with and all(s is fitted[0][0] for s in normalised_with)
    assert module.core.condition_stats is fitted[0][0]


def test_a_checkpoint_from_before_the_rename_loads_its_condition_statistics(tiny_config, domain_c, feature_cache,
                                                                             tmp_path):
    """The condition statistics were `core.map_stats.*` in earlier checkpoints: they load into condition_stats."""
    import torch

    from hdmap.kinds.registry import fit_and_score
    from hdmap.models.checkpoint_files import lightning_checkpoint
    from hdmap.kinds.patchcore.module import PatchCoreModule

    module, _, _ = fit_and_score(tiny_config, domain_c, feature_cache)
    checkpoint = lightning_checkpoint(module)
    old = {key.replace("core.condition_stats.", "core.map_stats."): value
           for key, value in checkpoint["state_dict"].items()}
    assert any(key.startswith("core.map_stats.") for key in old)
    torch.save({**checkpoint, "state_dict": old}, tmp_path / "old.ckpt")
    reloaded = PatchCoreModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    for key, value in module.core.condition_stats.state_dict().items():
        assert torch.equal(reloaded.core.condition_stats.state_dict()[key], value)


def test_a_large_train_set_fits_its_pixel_statistics_on_a_seeded_sample_and_every_maps_percentile(monkeypatch):
    """Memory bounded on a domain of 100,000 maps: per-map percentiles in chunks (the same values), the pixel, row
    and band statistics from a seeded sample of FIT_MAPS maps (noted); unchanged below the cap."""
    import numpy as np
    import torch

    from hdmap import statistics
    from hdmap.data import condition_statistics as module

    generator = np.random.default_rng(1)
    maps = (generator.random((60, 8, 12)) * np.where(np.arange(60) < 30, 1.0, 1.4)[:, None, None]).astype(np.float32)
    whole = torch.as_tensor(maps)
    expected = torch.quantile(whole.flatten(1), 0.9, dim=1)
    monkeypatch.setattr(statistics, "PERCENTILE_MAPS", 7)  # chunks of 7 maps, the last one short
    assert torch.equal(statistics.map_percentile(whole, 90.0), expected)
    below = module.ConditionStatistics("percentile", 50.0, 90.0).fit(maps)
    monkeypatch.setattr(module, "FIT_MAPS", 60)
    assert torch.equal(module.ConditionStatistics("percentile", 50.0, 90.0).fit(maps).pixel, below.pixel)
    monkeypatch.setattr(module, "FIT_MAPS", 20)
    capped = module.ConditionStatistics("percentile", 50.0, 90.0).fit(maps)
    assert any("sample of 20 of the 60 train maps" in note for note in capped.notes)
    assert torch.equal(capped.threshold, below.threshold)  # every map's percentile still sets the gate threshold
    assert torch.equal(capped.percentile_scale, below.percentile_scale)
    assert not torch.equal(capped.pixel, below.pixel)
