"""The band detector (hdmap/models/band.py), its kind and its fusion with PatchCore: a planted faint band is found,
a warm twin scores as its cold map under the log transform, every setting changes the score, fusion off is
PatchCore exactly, and the kind runs through fit-eval, eval and the search's start points."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hdmap.cli.main import main
from hdmap.config import ConfigError, merge, plain
from hdmap.kinds.registry import default_config, fit_and_score, validate
from hdmap.models.band import BandConfig, BandDetector
from hdmap.models.lightning_band import BandModel
from hdmap.models.patchcore import GatedPatchCoreModel
from hdmap.models.patchcore_config import PatchCoreConfig

SHAPE = (31, 95)


def noise_maps(n: int, seed: int) -> np.ndarray:
    """Positive maps of multiplicative noise around a fixed row structure (what a band must stand out of)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.5, 1.0, SHAPE[0])[:, None]
    return (rows * np.exp(0.1 * rng.standard_normal((n, *SHAPE)))).astype(np.float32)


def with_band(maps: np.ndarray, contrast: float, seed: int) -> np.ndarray:
    """One full-width row of each map multiplied by `contrast` (a random row per map)."""
    rng = np.random.default_rng(seed)
    out = maps.copy()
    for image in out:
        image[rng.integers(1, SHAPE[0] - 1)] *= contrast
    return out


@pytest.fixture(scope="module")
def train_maps():
    return noise_maps(200, seed=0)


def band_auroc(config: BandConfig, train: np.ndarray, contrast: float = 1.1) -> float:
    good, faulty = noise_maps(100, seed=1), with_band(noise_maps(100, seed=2), contrast, seed=3)
    detector = BandDetector(config).fit(train)
    scores = detector.score(np.concatenate([good, faulty]))["scores"].numpy()
    return roc_auc_score([0] * len(good) + [1] * len(faulty), scores)


def test_a_one_row_band_of_contrast_1_1_in_noise_is_found(train_maps):
    # noise sd 0.1 per pixel: a full row's mean moves by log(1.1) = 0.095 against a row-mean sd of 0.01
    assert band_auroc(BandConfig(), train_maps) >= 0.99
    assert band_auroc(BandConfig(), train_maps, contrast=1.0) < 0.7  # no band: chance, the test can fail


def test_a_partial_band_needs_a_partial_run(train_maps):
    good = noise_maps(100, seed=1)
    faulty = noise_maps(100, seed=2)
    faulty[:, 15, 10:30] *= 1.15  # a fifth of the row
    labels = [0] * 100 + [1] * 100
    scores = {runs: BandDetector(BandConfig(runs=runs, polarity="bright")).fit(train_maps).score(
        np.concatenate([good, faulty]))["scores"].numpy() for runs in ((1.0,), (1.0, 0.2))}
    assert roc_auc_score(labels, scores[(1.0, 0.2)]) > roc_auc_score(labels, scores[(1.0,)]) + 0.1


def test_a_warm_map_scores_as_its_cold_twin_under_the_log_transform(train_maps):
    detector = BandDetector(BandConfig(transform="log")).fit(train_maps)
    cold = with_band(noise_maps(20, seed=4), 1.1, seed=5).astype(np.float64)
    assert torch.allclose(detector.score(cold)["scores"], detector.score(1.4 * cold)["scores"], atol=1e-9)
    linear = BandDetector(BandConfig(transform="linear")).fit(train_maps)  # the check can fail
    assert not torch.allclose(linear.score(cold)["scores"], linear.score(1.4 * cold)["scores"], atol=1e-3)


CHOICES = {"direction": ["rows", "columns", "both"], "transform": ["log", "linear", "percentile"],
           "detrend": ["column_profile", "train_mean", "neighbour_lines"], "compare_neighbours": [False, True],
           "runs": [(1.0,), (1.0, 0.5), (1.0, 0.5, 0.25), (0.5, 0.25)], "polarity": ["bright", "dark", "both"],
           "centre_scale": ["mean_std", "median_mad"], "per_condition": [False, True], "image_score": ["max", "top"]}
# every value that is not the default, whatever the defaults are
SETTINGS = [(key, value) for key, values in CHOICES.items() for value in values if value != getattr(BandConfig(), key)]


@pytest.mark.parametrize("key,value", SETTINGS)
def test_every_band_setting_changes_the_score(key, value, domain_c):
    base = BandConfig()
    maps = domain_c.test_maps
    before = BandDetector(base).fit(domain_c.train_maps, domain_c.train_truth).score(maps)["scores"]
    after = BandDetector(BandConfig(**{key: value})).fit(domain_c.train_maps, domain_c.train_truth).score(maps)
    assert not torch.allclose(before, after["scores"])


@pytest.mark.parametrize("key,value", [("percentile", 90.0), ("top_k", 5), ("gate", {"kind": "discover"})])
def test_the_dependent_band_settings_change_the_score(key, value, domain_c):
    parent = {"percentile": {"transform": "percentile"}, "top_k": {"image_score": "top"},
              "gate": {"per_condition": True}}[key]
    base = BandDetector(BandConfig(**parent)).fit(domain_c.train_maps, domain_c.train_truth)
    other = BandDetector(BandConfig(**parent, **{key: value})).fit(domain_c.train_maps, domain_c.train_truth)
    assert not torch.allclose(base.score(domain_c.test_maps)["scores"], other.score(domain_c.test_maps)["scores"])


def test_per_condition_statistics_pool_with_a_note_when_a_condition_is_too_small(train_maps):
    detector = BandDetector(BandConfig(per_condition=True)).fit(train_maps)  # one condition: noise maps
    assert bool(detector.pooled) and "pooled" in detector.notes[0]


def test_the_band_checkpoint_is_data_only_and_reloads_to_the_same_scores(train_maps, tmp_path):
    model = BandModel(plain(BandConfig(per_condition=True, gate={"kind": "discover"})), SHAPE).fit(
        np.concatenate([train_maps, 1.4 * train_maps]))
    from hdmap.models.checkpoint_files import lightning_checkpoint
    torch.save(lightning_checkpoint(model), tmp_path / "band.ckpt")
    reloaded = BandModel.load_from_checkpoint(tmp_path / "band.ckpt", map_location="cpu", weights_only=True)
    maps = noise_maps(10, seed=9)
    assert torch.equal(model.score(maps)["scores"], reloaded.score(maps)["scores"])
    assert not bool(reloaded.core.pooled) and reloaded.core.config.gate.kind == "discover"


def test_bad_band_settings_are_named():
    with pytest.raises(ConfigError, match="'band.polarity' expects one of bright, dark, both, got 'sideways'"):
        validate(merge(default_config(model_name="band"), {"band": {"polarity": "sideways"}}))
    with pytest.raises(ConfigError, match="band: runs"):
        validate(merge(default_config(model_name="band"), {"band": {"runs": [0.0]}}))
    with pytest.raises(ConfigError, match="model.band: gate.kind"):
        validate(merge(default_config(), {"model": {"band": {"per_condition": True, "gate": {"kind": "feature"}}}}))


# --- fusion in PatchCore -----------------------------------------------------------------------------------------
def grids_of(maps: np.ndarray) -> list[torch.Tensor]:
    """A stand-in tap grid: 4 x 8 average-pooled maps with 3 channels (PatchCore needs only some grid)."""
    x = torch.from_numpy(maps).float()[:, None]
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, (4, 8))
    return [torch.cat([pooled, pooled ** 2, pooled.sqrt()], dim=1)]


def fitted_patchcore(fusion: str, train: np.ndarray, **model) -> GatedPatchCoreModel:
    config = PatchCoreConfig(input_norm="none", band_weight=0.0, calibration_maps=8, fusion=fusion, **model)
    return GatedPatchCoreModel(config).fit(grids_of(train), train)


def test_fusion_none_is_patchcore_exactly(train_maps):
    """fusion=none scores are the bank's own PatchCore image scores, bit for bit (and the commit before fusion gave
    byte-identical fit-eval scores: see the closing note of the band-detection issue)."""
    test = np.concatenate([noise_maps(20, seed=6), with_band(noise_maps(20, seed=7), 1.1, seed=8)])
    off = fitted_patchcore("none", train_maps)
    patchcore = off._bank_scores("mixed", off.embed(grids_of(test), torch.from_numpy(test)))[0]
    assert torch.equal(off.score(grids_of(test), test)["scores"], patchcore)
    fused = fitted_patchcore("max", train_maps)  # and fusion on does change it
    assert not torch.allclose(fused.score(grids_of(test), test)["scores"].float(),
                              off.score(grids_of(test), test)["scores"].float())


def test_fused_scores_standardise_both_scores_on_held_out_train_maps(train_maps):
    test = np.concatenate([noise_maps(50, seed=6), with_band(noise_maps(50, seed=7), 1.1, seed=8)])
    labels = [0] * 50 + [1] * 50
    fused = {mode: fitted_patchcore(mode, train_maps, **({"fusion_weight": w} if mode == "sum" else {}))
             for mode, w in (("sum", 0.5), ("max", None))}
    weighted = fitted_patchcore("sum", train_maps, fusion_weight=0.9)
    assert len(fused["sum"].banks["mixed"]) < len(fitted_patchcore("none", train_maps).banks["mixed"])  # held out
    (pc_mean, pc_std), (band_mean, band_std) = fused["sum"].fusion_calibration
    assert pc_std > 0 and band_std > 0 and "16 held-out train normals" in fused["sum"].notes[-1]
    scores = {k: m.score(grids_of(test), test)["scores"].numpy() for k, m in {**fused, "w0.9": weighted}.items()}
    assert not np.allclose(scores["sum"], scores["max"]) and not np.allclose(scores["sum"], scores["w0.9"])
    assert roc_auc_score(labels, scores["w0.9"]) > 0.95  # the band score carries a fused score on band faults


def test_fusion_holds_out_at_most_a_quarter_of_an_all_of_train_bank_and_refuses_no_room(train_maps):
    small = fitted_patchcore("sum", train_maps[:40])  # 2 x 8 wanted, 40 // 4 = 10 held out
    assert "standardised on 10 held-out train normals" in small.notes[-1]
    with pytest.raises(ValueError, match="model.calibration_maps"):
        fitted_patchcore("sum", train_maps[:12], shots=5, reference_sampling="uniform")  # 2 maps outside


# --- the kind through the commands -----------------------------------------------------------------------------
def test_band_kind_runs_fit_eval_and_eval_reproduces_it(synth_root, tmp_path):
    out = tmp_path / "band_run"
    assert main(["fit-eval", "--data-root", str(synth_root), "--model", "band", "--out", str(out),
                 "--set", "band.per_condition=true"]) == 0
    fitted = json.loads((out / "metrics.json").read_text())
    assert fitted["model"] == "band" and fitted["timing_s"]["features"] == 0.0 and fitted["gate"]["kind"]
    assert (out / "anomaly_maps.png").is_file()
    assert main(["eval", str(out), "--out", str(tmp_path / "band_eval")]) == 0
    reloaded = json.loads((tmp_path / "band_eval" / "metrics.json").read_text())
    assert reloaded["holdout"] == fitted["holdout"]


def test_band_only_in_a_patchcore_config_runs_no_backbone(domain_c, monkeypatch):
    from hdmap.run import patchcore_pipeline

    monkeypatch.setattr(patchcore_pipeline, "fit_and_score", lambda *a, **k: pytest.fail("PatchCore ran"))
    config = validate(merge(default_config(), {"model": {"fusion": "band_only"}}))
    module, outputs, metrics = fit_and_score(config, domain_c, cache=None)
    assert isinstance(module, BandModel) and "no backbone ran" in metrics["notes"][0]
    band = fit_and_score(default_config(model_name="band"), domain_c)[1]
    assert torch.equal(outputs["scores"], band["scores"])  # the same detector as the band kind


def test_a_search_over_model_fusion_starts_with_the_defaults_then_the_band_detector():
    from hdmap.tune.spaces import load_space
    from hdmap.tune.start_points import BAND_ONLY_LABEL, DEFAULTS_LABEL, start_points
    from hdmap.tune.runner import SPACES_DIR

    for name in ("gated_patchcore_quick", "gated_patchcore", "patchcore_quick", "patchcore"):
        space = load_space(SPACES_DIR / f"{name}.yaml")
        starts = start_points(space, space.base_config())
        assert [s["label"] for s in starts] == [DEFAULTS_LABEL, BAND_ONLY_LABEL]
        band_point = starts[1]["point"]
        assert band_point["model.fusion"] == "band_only" and "image_size" not in band_point  # no backbone settings
    band_space = load_space(SPACES_DIR / "band_quick.yaml")
    assert [s["label"] for s in start_points(band_space, band_space.base_config())] == [DEFAULTS_LABEL]


@pytest.mark.parametrize("config", [default_config(model_name="band"),
                                    merge(default_config(), {"model": {"fusion": "band_only"}})],
                         ids=["band kind", "band_only PatchCore config"])
def test_the_tune_trainable_runs_the_band_detector_and_saves_an_evaluable_checkpoint(config, domain_c, tmp_path,
                                                                                      monkeypatch):
    from ray import tune

    from hdmap.jobs.evaluate_checkpoint import evaluate_checkpoint
    from hdmap.tune import trainables

    reports = []

    def report(values, checkpoint=None):
        folder = tmp_path / f"checkpoint_{len(reports)}"
        import shutil
        shutil.copytree(checkpoint.path, folder)
        reports.append((values, folder))

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(trainables, "_domain", lambda **kwargs: domain_c)
    trainables.trainable({}, config, {}, "auroc", str(tmp_path / "cache"))
    values, folder = reports[0]
    assert values["features_s"] == 0.0 and values["feature_cache_hits"] == 0
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))  # no features
    metrics = evaluate_checkpoint(folder)
    assert metrics["tune"]["auroc"] == pytest.approx(values["tune_auroc"])
