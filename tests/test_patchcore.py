import copy

import numpy as np
import pytest
import torch

from hdmap.kinds.registry import settings_of
from hdmap.models.checkpoint_files import lightning_checkpoint
from hdmap.kinds.patchcore.module import PatchCoreModule
from hdmap.kinds.patchcore.kind import build_module
from hdmap.kinds.registry import fit_and_score
from hdmap.models.knn_choice import knn_choice
from hdmap.kinds.patchcore import pipeline as patchcore_pipeline
from hdmap.kinds.patchcore.pipeline import cached_features, score_patchcore


def _config(base, **model):
    config = copy.deepcopy(base)
    config["model"].update(model)
    return config


@pytest.mark.parametrize("mode", ["mixed", "gated", "soft"])
def test_bank_modes_fit_and_score(tiny_config, domain_c, feature_cache, mode):
    module, outputs, metrics = fit_and_score(_config(tiny_config, bank_mode=mode), domain_c, feature_cache)
    n = len(domain_c.test)
    assert outputs["scores"].shape == (n,) and torch.isfinite(outputs["scores"]).all()
    assert outputs["patch_maps"].shape[0] == n
    assert set(module.core.banks) == ({"mixed"} if mode == "mixed" else {"cold", "warm"})
    from hdmap.evaluation.metrics import accuracy_at

    holdout = np.asarray(domain_c.split.holdout)  # the metrics are those of these outputs at the tune threshold
    assert metrics["holdout"]["accuracy"] == pytest.approx(accuracy_at(
        outputs["scores"].numpy()[holdout], domain_c.test_labels[holdout], metrics["tune"]["threshold"]))
    assert metrics["gate"]["kind"] == "intensity" and metrics["gate"]["accuracy"] is not None  # sampling uses it


def test_gated_mode_scores_against_the_routed_bank(tiny_config, domain_c, feature_cache):
    module, outputs, _ = fit_and_score(_config(tiny_config, bank_mode="gated"), domain_c, feature_cache)
    _, test_grids = cached_features(settings_of(tiny_config), domain_c, feature_cache)
    embedding = module.core.embed([torch.from_numpy(np.array(g)) for g in test_grids])
    cold = module.core._bank_scores("cold", embedding)[0]
    warm = module.core._bank_scores("warm", embedding)[0]
    expected = torch.where(outputs["route"].bool(), warm, cold)
    assert torch.allclose(outputs["scores"], expected, rtol=1e-3)  # faiss: other query batches, other rounding


def test_soft_calibration_is_a_z_score(tiny_config, domain_c, feature_cache):
    module, _, _ = fit_and_score(_config(tiny_config, bank_mode="soft"), domain_c, feature_cache)
    plan, core = module.plan, module.core
    assert len(set(plan.calibration) & set(plan.references)) == 0  # held out: not references
    train_grids, _ = cached_features(settings_of(tiny_config), domain_c, feature_cache)
    for code, name in enumerate(("cold", "warm")):
        maps = plan.calibration[plan.calibration_codes == code]
        assert len(maps) == tiny_config["model"]["calibration_maps"]
        raw = core._bank_scores(name, core.embed([torch.from_numpy(np.array(g[maps])) for g in train_grids]))[0]
        z = (raw - core.calibration[code, 0]) / core.calibration[code, 1]
        assert abs(z.mean().item()) < 1e-4 and z.std().item() == pytest.approx(1.0, abs=1e-4)


def _assert_devices(module, outputs, device: str, knn: str):
    """Every tensor of the module (banks, gate, condition statistics, calibration) and every kNN index on `device`;
    outputs on the CPU."""
    assert {name: t.device.type for name, t in module.state_dict().items()} == {
        name: device for name in module.state_dict()}
    for bank in module.core.banks.values():
        assert bank.index().backend == knn and bank.index().device.type == device
        assert all(i.device.type == device for _, i in bank._indexes.values())
    assert {k: module.devices_used[k] for k in ("banks", "knn")} == {"banks": str(module.core.calibration.device),
                                                                     "knn": knn}
    assert module.devices_used["knn_reason"]  # metrics.json says why this kNN ran
    assert all(value.device.type == "cpu" for value in outputs.values())  # outputs always come back to the CPU


def test_cpu_run_keeps_banks_and_knn_on_cpu(tiny_config, domain_c, feature_cache):
    config = _config(tiny_config, bank_mode="gated", input_norm="percentile", band_weight=1.0, fusion="max")
    module, outputs, metrics = patchcore_pipeline.fit_and_score(build_module(settings_of(config)), settings_of(config), domain_c,
                                                                feature_cache, accelerator="cpu")
    cpu_knn = knn_choice("cpu")  # faiss-cpu where installed (here), torch without faiss (the GPU machine)
    _assert_devices(module, outputs, "cpu", cpu_knn.backend)  # fit and predict
    assert metrics["devices"] == {"backbone": "cpu", "banks": "cpu", "knn": cpu_knn.backend,
                                  "knn_reason": cpu_knn.reason}
    backbone = feature_cache.backbone(settings_of(config).backbone, "cpu")
    assert next(backbone.parameters()).device.type == "cpu"
    torch.save(lightning_checkpoint(module), feature_cache.root / "devices.ckpt")
    reloaded = PatchCoreModule.load_from_checkpoint(feature_cache.root / "devices.ckpt", map_location="cpu")
    again, eval_metrics = patchcore_pipeline.score_saved_module(reloaded, settings_of(config), domain_c, feature_cache,
                                                                 "cpu")
    _assert_devices(reloaded, again, "cpu", cpu_knn.backend)  # eval
    assert eval_metrics["devices"] == metrics["devices"] and torch.equal(again["scores"], outputs["scores"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_puts_backbone_banks_and_knn_on_the_gpu(tiny_config, domain_c, tmp_path):
    from hdmap.features.cache import FeatureCache
    from hdmap.models.memory_bank import knn_backend

    cache = FeatureCache(tmp_path / "cache", progress=False)
    assert cache.device == "cuda" and next(cache.backbone(
        settings_of(tiny_config).backbone).parameters()).device.type == "cuda"
    config = _config(tiny_config, bank_mode="gated", input_norm="percentile", band_weight=1.0, fusion="max")
    module, outputs, metrics = fit_and_score(config, domain_c, cache)
    built_in_predict = {name: bank._indexes["cuda:0"][1] for name, bank in module.core.banks.items()}
    module.cuda()  # Lightning hands the module back on the CPU after predict; the banks follow it
    _assert_devices(module, outputs, "cuda", knn_backend("cuda:0"))
    assert all(bank.index() is built_in_predict[name] for name, bank in module.core.banks.items())  # not rebuilt
    assert metrics["devices"]["banks"].startswith("cuda") and metrics["devices"]["backbone"].startswith("cuda")
    torch.save(lightning_checkpoint(module), tmp_path / "devices.ckpt")
    reloaded = PatchCoreModule.load_from_checkpoint(tmp_path / "devices.ckpt", map_location="cpu")
    again, eval_metrics = patchcore_pipeline.score_saved_module(reloaded, settings_of(config), domain_c, cache)
    reloaded.cuda()
    _assert_devices(reloaded, again, "cuda", knn_backend("cuda:0"))  # eval
    assert eval_metrics["devices"] == metrics["devices"]


def test_bank_size_follows_coreset_ratio(tiny_config, domain_c, feature_cache):
    module, _, _ = fit_and_score(_config(tiny_config, bank_mode="mixed", coreset_ratio=0.25), domain_c,
                                 feature_cache)
    train_grids, _ = cached_features(settings_of(tiny_config), domain_c, feature_cache)
    patches_per_map = np.prod(train_grids[0].shape[2:])
    assert len(module.core.banks["mixed"]) == round(0.25 * 8 * patches_per_map)


def test_bank_size_in_patches_overrides_the_ratio(tiny_config, domain_c, feature_cache):
    config = _config(tiny_config, bank_mode="mixed", coreset_ratio=0.25, bank_size=37, coreset_method="composable")
    module, _, _ = fit_and_score(config, domain_c, feature_cache)
    assert len(module.core.banks["mixed"]) == 37


def test_a_fit_in_a_log_prints_progress_lines(tiny_config, domain_c, feature_cache, capsys, monkeypatch):
    from hdmap import progress

    monkeypatch.setattr(progress, "FIRST_LINE_S", 0.0)  # every stage counts as long
    config = _config(tiny_config, bank_mode="mixed", coreset_ratio=0.25, seed=7)  # a seed no stored order has
    fit_and_score(config, domain_c, feature_cache)
    log = capsys.readouterr().err  # not a terminal: lines, no bar
    for stage in ("fit epoch 1/1", "coreset (greedy)", "predict"):
        assert f"[hdmap] {stage}: " in log and any(line.startswith(f"[hdmap] {stage}: ") and "done in" in line
                                                   for line in log.splitlines()), stage


def test_too_few_references_names_the_setting_the_limit_and_the_condition(tiny_config, domain_c, feature_cache):
    with pytest.raises(ValueError, match=r"model.shots=500 is more than this data holds \(at most \d+ per condition\)"
                                         r".*references of condition '(cold|warm)'"):
        fit_and_score(_config(tiny_config, bank_mode="gated", shots=500), domain_c, feature_cache)


def test_one_sided_gate_errors_in_gated_and_falls_back_in_soft(tiny_config, domain_c, feature_cache, tmp_path):
    gate = {"kind": "intensity", "threshold": 100.0}
    with pytest.raises(ValueError, match="one condition"):
        fit_and_score(_config(tiny_config, bank_mode="gated", gate=gate, gate_fallback=False), domain_c, feature_cache)
    module, _, metrics = fit_and_score(_config(tiny_config, bank_mode="gated", gate=gate), domain_c, feature_cache)
    assert set(module.core.banks) == {"mixed"} and any("fell back to one mixed bank" in n for n in metrics["notes"])
    with pytest.warns(UserWarning, match="one condition"):
        module, _, metrics = fit_and_score(_config(tiny_config, bank_mode="soft", gate=gate, gate_fallback=False),
                                           domain_c, feature_cache)
    assert set(module.core.banks) == {"mixed"} and metrics["notes"]
    torch.save(lightning_checkpoint(module), tmp_path / "fallback.ckpt")  # reloads as what was fitted
    reloaded = PatchCoreModule.load_from_checkpoint(tmp_path / "fallback.ckpt", map_location="cpu")
    assert set(reloaded.core.banks) == {"mixed"} and len(reloaded.core.banks["mixed"]) > 0
    # the settings stay as asked; the fit's decision is recorded beside them
    assert module.core.settings.bank_mode == "soft" and module.core.fallback == "mixed"
    assert metrics["config"]["model"]["bank_mode"] == "soft" and metrics["fit_decisions"] == {"fallback": "mixed",
                                                                                           "fusion": None}
    assert reloaded.hparams["model"]["bank_mode"] == "soft" and reloaded.core.fallback == "mixed"
    assert reloaded.core.config.bank_mode == "mixed"  # what runs


def test_unfitted_model_refuses_to_score(tiny_config, domain_c, feature_cache):
    module = build_module(settings_of(tiny_config))
    _, test_grids = cached_features(settings_of(tiny_config), domain_c, feature_cache)
    with pytest.raises(RuntimeError, match="empty"):
        module.core.score(test_grids, domain_c.test_maps)


def test_checkpoint_round_trip_identical_scores(tiny_config, domain_c, feature_cache, tmp_path):
    module, outputs, _ = fit_and_score(_config(tiny_config, bank_mode="soft", context_ks=[0, 1]), domain_c,
                                       feature_cache)
    torch.save(lightning_checkpoint(module), tmp_path / "model.ckpt")
    reloaded = PatchCoreModule.load_from_checkpoint(tmp_path / "model.ckpt", map_location="cpu")
    _, test_grids = cached_features(settings_of(tiny_config), domain_c, feature_cache)
    again = score_patchcore(reloaded, test_grids, domain_c)
    assert torch.equal(again["scores"], outputs["scores"])


def test_oracle_gate_without_train_conditions_says_so_in_metrics_and_report(tiny_config, synth_root, feature_cache,
                                                                             tmp_path):
    from hdmap.evaluation.report import write_report
    from hdmap.data.domain import load_domain

    data = load_domain(str(synth_root), "C", tmp_path / "split.json")  # no condition CSV: train conditions unknown
    _, _, metrics = fit_and_score(_config(tiny_config, bank_mode="gated", gate={"kind": "oracle"}), data,
                                  feature_cache)
    assert "train conditions unknown" in metrics["gate"]["train_assignment"]
    assert any("oracle gate" in note for note in metrics["notes"])
    assert "train conditions unknown" in write_report(tmp_path, metrics).read_text()


def test_trial_scoring_of_tune_maps_only_matches_the_full_run(tiny_config, domain_c, feature_cache):
    _, full_outputs, full = fit_and_score(_config(tiny_config, bank_mode="gated"), domain_c, feature_cache)
    _, outputs, trial = fit_and_score(_config(tiny_config, bank_mode="gated"), domain_c, feature_cache,
                                      tune_only=True)
    tune = np.asarray(domain_c.split.tune)
    assert outputs["index"].tolist() == tune.tolist() and trial["holdout"] is None
    assert torch.equal(outputs["scores"], full_outputs["scores"][tune])  # same batches: bit-for-bit
    assert trial["tune"]["auroc"] == pytest.approx(full["tune"]["auroc"])
    assert trial["tune"]["accuracy"] == pytest.approx(full["tune"]["accuracy"])


@pytest.mark.parametrize("bank_mode", ["mixed", "gated"])
def test_gate_without_two_clear_conditions_falls_back_to_uniform_references_with_a_note(
        bank_mode, tiny_config, feature_cache, tmp_path):
    """Warm gain 1.0: train intensity has one mode, so the gate would split at chance. The default (mixed bank,
    k references per gate-assigned condition) and a gated bank both fall back to one bank of 2k uniformly
    drawn references, and metrics.json and report.md say why."""
    from hdmap.data.synth import SynthConfig, write_dataset
    from hdmap.evaluation.report import write_report
    from hdmap.data.domain import load_domain

    write_dataset(tmp_path / "one_condition", SynthConfig(n_train=40, n_test=20, seed=5, domains="C", warm_gain=1.0))
    data = load_domain(str(tmp_path / "one_condition"), "C", tmp_path / "split.json")
    module, _, metrics = fit_and_score(_config(tiny_config, bank_mode=bank_mode), data, feature_cache)
    assert set(module.core.banks) == {"mixed"} and module.core.config.reference_sampling == "uniform"
    note = next(n for n in metrics["notes"] if "did not split train into two clear conditions" in n)
    assert "Ashman's D" in note and metrics["gate"]["kind"] is None
    assert "Ashman's D" in write_report(tmp_path, metrics).read_text()
    assert len(module.plan.references) == 2 * tiny_config["model"]["shots"]


def test_default_inputs_follow_step6_and_plain_patchcore_takes_the_raw_maps(domain_c, feature_cache):
    """The fit-eval default scales each map by its own median and appends the band channel (step 6's choice);
    the plain PatchCore baseline scores the raw maps. Both are checked on what the fitted models hold."""
    from conftest import TINY_BACKBONE
    from hdmap.config import merge
    from hdmap.kinds.registry import default_config

    sizes = {}
    for name in ("hdmap_patchcore", "patchcore"):
        config = merge(default_config(model_name=name), {"backbone": TINY_BACKBONE, "image_size": 112,
                                                          "model": {"shots": 4}})
        module, _, metrics = fit_and_score(config, domain_c, feature_cache)
        sizes[name] = module.core.banks["mixed"].features.shape[1]
        assert module.core.condition_stats.fitted == (name == "hdmap_patchcore")
    assert metrics["config"]["model"]["input_norm"] == "none" and metrics["config"]["model"]["band_weight"] == 0
    assert sizes["hdmap_patchcore"] == sizes["patchcore"] + 1  # the band-descriptor channel


def test_a_checkpoint_whose_hparams_still_hold_backbone_and_input_settings_loads(tmp_path):
    """Earlier PatchCoreModule modules took backbone, image_size, resize and normalisation (unused): their
    checkpoints load into the module that takes its model settings only."""
    module = PatchCoreModule(model={"bank_mode": "mixed"})
    old = {"state_dict": module.state_dict(), "pytorch-lightning_version": "2.6.0",
           "hyper_parameters": {"backbone": {"name": "dinov2_vits14"}, "model": {"bank_mode": "mixed"},
                                "image_size": 448, "resize": "aspect", "normalisation": "backbone"}}
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = PatchCoreModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu", weights_only=True)
    assert dict(reloaded.hparams) == {"model": {"bank_mode": "mixed"}}


def test_fusion_calibration_weighs_soft_banks_with_the_gates_own_posterior(monkeypatch):
    """Test maps reach the soft combine with the gate's probability of warm; so do the calibration maps (they got a
    hard 0/1 before)."""
    import numpy as np

    from hdmap.kinds.patchcore.model import PatchCoreModel
    from hdmap.kinds.patchcore.settings import PatchCoreSettings

    model = PatchCoreModel(PatchCoreSettings(bank_mode="soft", soft_combine="posterior", fusion="max",
                                             input_norm="none", band_weight=0.0))
    seen = []
    monkeypatch.setattr(model, "_combine", lambda embedding, route, p_warm: seen.append(p_warm) or
                        (torch.zeros(len(route)), None))
    monkeypatch.setattr(model.band, "score", lambda maps, known=None: {"scores": torch.zeros(len(maps))})
    maps = torch.rand(8, 31, 95) * torch.tensor([1.0] * 4 + [1.4] * 4)[:, None, None]
    model.gate.assign_train(maps, None)
    model.calibrate_fusion(torch.zeros(8, 4, 2, 2), maps, np.array([0] * 4 + [1] * 4))
    assert not set(seen[0].tolist()) <= {0.0, 1.0}  # a posterior, not the hard assignment
