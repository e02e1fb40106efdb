"""The band detector (hdmap/models/band.py), its kind and its fusion with PatchCore: a planted faint band is found,
a warm twin scores as its cold map under the log transform, every setting changes the score, fusion off is
PatchCore exactly, and the kind runs through fit-eval, eval and the search's start points."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hdmap.cli.main import main
from hdmap.config import ConfigError, merge, plain
from hdmap.kinds.registry import default_config, fit_and_score, validate
from hdmap.models.band import BandSettings, BandModel
from hdmap.kinds.band.module import BandModule
from hdmap.kinds.patchcore.model import PatchCoreModel
from hdmap.kinds.patchcore.settings import AUTO_CHOICES, PatchCoreSettings

from conftest import TINY_BACKBONE_SETS

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


def band_auroc(config: BandSettings, train: np.ndarray, contrast: float = 1.1) -> float:
    good, faulty = noise_maps(100, seed=1), with_band(noise_maps(100, seed=2), contrast, seed=3)
    detector = BandModel(config).fit(train)
    scores = detector.score(np.concatenate([good, faulty]))["scores"].numpy()
    return roc_auc_score([0] * len(good) + [1] * len(faulty), scores)


def test_a_one_row_band_of_contrast_1_1_in_noise_is_found(train_maps):
    # noise sd 0.1 per pixel: a full row's mean moves by log(1.1) = 0.095 against a row-mean sd of 0.01
    assert band_auroc(BandSettings(), train_maps) >= 0.99
    assert band_auroc(BandSettings(), train_maps, contrast=1.0) < 0.7  # no band: chance, the test can fail


def test_a_partial_band_needs_a_partial_run(train_maps):
    good = noise_maps(100, seed=1)
    faulty = noise_maps(100, seed=2)
    faulty[:, 15, 10:30] *= 1.15  # a fifth of the row
    labels = [0] * 100 + [1] * 100
    scores = {runs: BandModel(BandSettings(statistic="single", runs=runs, polarity="bright")).fit(train_maps).score(
        np.concatenate([good, faulty]))["scores"].numpy() for runs in ((1.0,), (1.0, 0.2))}
    assert roc_auc_score(labels, scores[(1.0, 0.2)]) > roc_auc_score(labels, scores[(1.0,)]) + 0.1


@pytest.mark.parametrize("statistic", ["family", "single"])
def test_a_warm_map_scores_as_its_cold_twin_under_the_log_transform(train_maps, statistic):
    detector = BandModel(BandSettings(statistic=statistic, transform="log")).fit(train_maps)
    cold = with_band(noise_maps(20, seed=4), 1.1, seed=5).astype(np.float64)
    assert torch.allclose(detector.score(cold)["scores"], detector.score(1.4 * cold)["scores"], atol=1e-9)
    linear = BandModel(BandSettings(statistic="single", transform="linear")).fit(train_maps)  # the check can fail
    assert not torch.allclose(linear.score(cold)["scores"], linear.score(1.4 * cold)["scores"], atol=1e-3)


CHOICES = {"statistic": ["family", "single"], "direction": ["rows", "columns", "both"],
           "detrend": ["column_profile", "train_mean", "neighbour_lines"],
           "runs": [(1.0,), (1.0, 0.5), (1.0, 0.5, 0.25), (0.5, 0.25)], "polarity": ["bright", "dark", "both"],
           "centre_scale": ["mean_std", "median_mad"], "per_condition": [False, True], "image_score": ["max", "top"]}
FAMILY_CHOICES = {"widths": [(1,), (1, 2), (2, 3)], "pieces": [0, 6], "top_pieces": [1, 5]}  # statistic family only
SINGLE_CHOICES = {"transform": ["log", "linear", "percentile"], "compare_neighbours": [False, True]}  # single only


def changed(choices: dict, base: BandSettings) -> list:
    """Every value that is not the default, whatever the defaults are."""
    return [(key, value) for key, values in choices.items() for value in values if value != getattr(base, key)]


SETTINGS = ([(key, value, "family") for key, value in changed({**CHOICES, **FAMILY_CHOICES}, BandSettings())] +
            [(key, value, "single") for key, value in changed({**CHOICES, **SINGLE_CHOICES},
                                                              BandSettings(statistic="single")) if key != "statistic"])


@pytest.mark.parametrize("key,value,statistic", SETTINGS)
def test_every_band_setting_changes_the_score(key, value, statistic, domain_c):
    base = BandSettings(statistic=statistic)
    maps = domain_c.test_maps
    before = BandModel(base).fit(domain_c.train_maps, domain_c.train_truth).score(maps)["scores"]
    after = BandModel(replace(base, **{key: value})).fit(domain_c.train_maps, domain_c.train_truth).score(maps)
    assert not torch.allclose(before, after["scores"])


@pytest.mark.parametrize("key,value", [("percentile", 90.0), ("top_k", 5), ("gate", {"kind": "discover"})])
def test_the_dependent_band_settings_change_the_score(key, value, domain_c):
    parent = {"percentile": {"statistic": "single", "transform": "percentile"}, "top_k": {"image_score": "top"},
              "gate": {"per_condition": True}}[key]
    base = BandModel(BandSettings(**parent)).fit(domain_c.train_maps, domain_c.train_truth)
    other = BandModel(BandSettings(**parent, **{key: value})).fit(domain_c.train_maps, domain_c.train_truth)
    assert not torch.allclose(base.score(domain_c.test_maps)["scores"], other.score(domain_c.test_maps)["scores"])


def test_per_condition_statistics_pool_with_a_note_when_a_condition_is_too_small(train_maps):
    detector = BandModel(BandSettings(per_condition=True)).fit(train_maps)  # one condition: noise maps
    assert bool(detector.pooled) and "pooled" in detector.notes[0]


def test_the_band_checkpoint_is_data_only_and_reloads_to_the_same_scores(train_maps, tmp_path):
    model = BandModule(plain(BandSettings(per_condition=True, gate={"kind": "discover"})), SHAPE).fit(
        np.concatenate([train_maps, 1.4 * train_maps]))
    from hdmap.models.checkpoint_files import lightning_checkpoint
    torch.save(lightning_checkpoint(model), tmp_path / "band.ckpt")
    reloaded = BandModule.load_from_checkpoint(tmp_path / "band.ckpt", map_location="cpu", weights_only=True)
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


def fitted_patchcore(fusion: str, train: np.ndarray, **model) -> PatchCoreModel:
    config = PatchCoreSettings(**{"input_norm": "none", "band_weight": 0.0, "calibration_maps": 8, "fusion": fusion,
                                **model})
    return PatchCoreModel(config).fit(grids_of(train), train)


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
    assert "standardised on 10 held-out train normals" in small.notes[-2]
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
    from hdmap.kinds.patchcore import pipeline as patchcore_pipeline

    monkeypatch.setattr(patchcore_pipeline, "fit_and_score", lambda *a, **k: pytest.fail("PatchCore ran"))
    config = validate(merge(default_config(), {"model": {"fusion": "band_only"}}))
    module, outputs, metrics = fit_and_score(config, domain_c, cache=None)
    assert isinstance(module, BandModule) and "no backbone ran" in metrics["notes"][0]
    band = fit_and_score(default_config(model_name="band"), domain_c)[1]
    assert torch.equal(outputs["scores"], band["scores"])  # the same detector as the band kind


def test_a_search_over_model_fusion_starts_with_the_defaults_then_the_band_detector():
    from hdmap.tune.spaces import load_space
    from hdmap.kinds.patchcore.kind import BAND_ONLY_LABEL
    from hdmap.tune.start_points import DEFAULTS_LABEL, start_points
    from hdmap.tune.runner import SPACES_DIR

    for name in ("hdmap_patchcore_quick", "hdmap_patchcore", "patchcore_quick", "patchcore"):
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


# --- statistics that hold at small counts ------------------------------------------------------------------------
def test_a_condition_of_eight_train_maps_does_not_inflate_its_normal_scores(monkeypatch):
    """Per-condition line scales from 8 maps underestimate a few of many lines: without shrinkage over half of that
    condition's normals score above the other condition's 95th percentile; with it about 5 % do, as they should."""
    from hdmap.models import band

    train = np.concatenate([noise_maps(150, seed=10), 1.4 * noise_maps(8, seed=11)])
    cold, warm = noise_maps(300, seed=12), 1.4 * noise_maps(300, seed=13)

    def warm_above_cold_p95() -> float:
        detector = BandModel(BandSettings(per_condition=True)).fit(train)
        assert not bool(detector.pooled) and "8" in detector.notes[0]
        return float((detector.score(warm)["scores"] > detector.score(cold)["scores"].quantile(0.95)).double().mean())

    assert warm_above_cold_p95() < 0.15
    monkeypatch.setattr(band, "SHRINK_MAPS", 0)  # each condition on its own: the check can fail
    assert warm_above_cold_p95() > 0.3


def test_clipped_zero_pixels_are_not_dark_outliers_under_the_log_transform(monkeypatch):
    """0.3 % of every map's pixels clipped to 0: the log floor from train percentiles keeps them at the train's own
    dark tail; a floor of a thousandth of the median made each a strong dark outlier."""
    from hdmap.models import band

    def zeroed(maps: np.ndarray, seed: int) -> np.ndarray:
        maps = maps.copy()
        maps[np.random.default_rng(seed).random(maps.shape) < 0.003] = 0.0
        return maps

    train = zeroed(noise_maps(200, seed=0), 20)
    test = np.concatenate([zeroed(noise_maps(100, seed=1), 21), zeroed(with_band(noise_maps(100, seed=2), 1.1, 3), 22)])
    labels = [0] * 100 + [1] * 100

    def auroc_both_polarities() -> float:
        detector = BandModel(BandSettings(polarity="both")).fit(train)
        return roc_auc_score(labels, detector.score(test)["scores"].numpy())

    fitted = auroc_both_polarities()
    monkeypatch.setattr(band, "fit_log_floor", lambda maps: 1e-3)  # the floor before
    assert fitted > 0.99 and fitted > auroc_both_polarities() + 0.02


def test_the_median_is_the_true_median():
    from hdmap.models.band_filters import true_median

    values = torch.tensor([[1.0], [2.0], [10.0], [20.0]])
    assert float(true_median(values)) == 6.0 and float(values.median(dim=0).values) == 2.0  # torch: the lower one


# --- the family of matched filters -----------------------------------------------------------------------------
def test_the_family_finds_what_no_single_filter_finds_on_both_shapes(train_maps):
    """A smooth row-gain drift per map (neighbour comparison needed) and wide bands (neighbour comparison harmful):
    the family is within 2 points of the better single filter on each."""
    rng = np.random.default_rng(30)
    phases = np.linspace(0, np.pi, SHAPE[0]) * rng.uniform(1, 3, (400, 1)) + rng.uniform(0, 6, (400, 1))
    drift = 1 + 0.06 * np.sin(phases)
    drifting = noise_maps(400, seed=31) * drift[:, :, None].astype(np.float32)
    wide = noise_maps(200, seed=32)
    wide[100:, 12:15] *= 1.06  # a band three rows wide
    labels = [0] * 100 + [1] * 100
    drift_test = np.concatenate([drifting[200:300], with_band(drifting[300:], 1.1, seed=33)])
    sets = {"drift": (drifting[:200], drift_test), "wide": (train_maps, wide)}
    result = {}
    for name, (train, test) in sets.items():
        for label, config in (("family", BandSettings()), ("plain", BandSettings(statistic="single")),
                              ("neighbours", BandSettings(statistic="single", compare_neighbours=True))):
            result[name, label] = roc_auc_score(labels, BandModel(config).fit(train).score(test)["scores"].numpy())
    assert result["drift", "neighbours"] > result["drift", "plain"] + 0.05  # each shape needs the other filter
    assert result["wide", "plain"] > result["wide", "neighbours"] + 0.05
    for name in sets:
        assert result[name, "family"] >= max(result[name, "plain"], result[name, "neighbours"]) - 0.02


def test_a_checkpoint_from_before_the_family_loads_as_the_one_filter_it_was(train_maps, tmp_path):
    from hdmap.models.checkpoint_files import lightning_checkpoint

    model = BandModule(plain(BandSettings(statistic="single")), SHAPE).fit(train_maps)
    model.core.log_floor.fill_(1e-3)  # the floor before
    old = lightning_checkpoint(model)
    for key in ("statistic", "widths", "pieces", "top_pieces"):  # what the hparams held then
        old["hyper_parameters"]["band"].pop(key)
    old["state_dict"]["core.mean_map"] = old["state_dict"]["core.mean_map"][:, 0]
    old["state_dict"].pop("core.log_floor")
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = BandModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu", weights_only=True)
    maps = noise_maps(10, seed=9)
    assert reloaded.core.config.statistic == "single"
    assert torch.equal(model.score(maps)["scores"], reloaded.score(maps)["scores"])


# --- fusion auto -------------------------------------------------------------------------------------------------
def test_fusion_auto_keeps_the_best_tune_choice_and_scores_with_it(train_maps):
    model = fitted_patchcore("auto", train_maps)
    rng = np.random.default_rng(40)
    labels = np.r_[np.zeros(50), np.ones(50)]
    blind, seeing = rng.standard_normal(100), rng.standard_normal(100) + 3 * labels
    for parts, expected in (((blind, seeing), "band"), ((seeing, blind), "patchcore"),
                            ((seeing, seeing + 0.01 * blind), "max")):
        parts = torch.from_numpy(np.stack(parts, axis=1))
        aurocs = model.choose_fusion(parts, labels)
        assert AUTO_CHOICES[int(model.fusion_choice)] == expected
        assert aurocs[expected] == max(aurocs.values())
        assert torch.equal(model.fuse(parts), model.fuse(parts, expected))


def test_fit_eval_defaults_record_the_fusion_choice_and_eval_reproduces_it(synth_root, tmp_path):
    out = tmp_path / "fused"
    tiny = [arg for key in TINY_BACKBONE_SETS for arg in ("--set", key)]
    assert main(["fit-eval", "--data-root", str(synth_root), *tiny, "--set", "image_size=112", "--out", str(out)]) == 0
    fitted = json.loads((out / "metrics.json").read_text())
    chosen = fitted["fit_decisions"]["fusion"]
    assert chosen in AUTO_CHOICES and any(note.startswith(f"fusion auto: {chosen}") for note in fitted["notes"])
    assert main(["eval", str(out), "--out", str(tmp_path / "again")]) == 0
    reloaded = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert reloaded["holdout"] == fitted["holdout"] and reloaded["fit_decisions"]["fusion"] == chosen


def test_fusion_notes_a_small_calibration_and_holds_out_32_maps_from_200(train_maps):
    notes = " ".join(fitted_patchcore("max", train_maps, calibration_maps=16).notes)  # the default count
    assert "standardised on 32 held-out" in notes and "only" not in notes
    small = fitted_patchcore("max", train_maps[:40])  # 10 held out
    assert any("only 10 held-out train normals" in note and "24 %" in note for note in small.notes)


def test_fusion_with_a_per_condition_band_detector_on_an_oracle_gate_fits(domain_c, tiny_config):
    """The fusion calibration scores its held-out train maps with their conditions: an oracle band gate (train
    conditions known from the CSV) no longer fails for want of them."""
    from hdmap.config import merge
    from hdmap.kinds.registry import fit_and_score, validate

    config = validate(merge(tiny_config, {"model": {"fusion": "max", "calibration_maps": 4,
                                                    "band": {"per_condition": True, "gate": {"kind": "oracle"}}}}))
    _, outputs, metrics = fit_and_score(config, domain_c, tune_only=True)
    assert metrics["tune"]["auroc"] is not None and len(outputs["scores"]) == len(domain_c.split.tune)


def test_line_statistics_come_from_at_most_fit_maps_train_maps_a_seeded_sample(train_maps):
    """Memory bounded on a domain of 100,000 maps: the statistics of a seeded sample, said; all maps up to the cap."""
    capped = BandModel(BandSettings(fit_maps=120)).fit(train_maps)
    picked = np.sort(np.random.default_rng(0).choice(len(train_maps), 120, replace=False))
    on_sample = BandModel(BandSettings(fit_maps=120)).fit(train_maps[picked])
    assert any("sample of 120 of the 200 train maps" in note for note in capped.notes)
    good = noise_maps(20, seed=1)
    assert torch.equal(capped.score(good)["scores"], on_sample.score(good)["scores"])
    whole = BandModel(BandSettings()).fit(train_maps)
    assert not any("sample" in note for note in whole.notes)
    assert not torch.equal(whole.score(good)["scores"], capped.score(good)["scores"])
    assert torch.equal(BandModel(BandSettings(fit_maps=200)).fit(train_maps).score(good)["scores"],
                       whole.score(good)["scores"])
