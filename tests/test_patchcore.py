import copy

import numpy as np
import pytest
import torch

from hdmap.models.lightning_checkpoint import lightning_checkpoint
from hdmap.models.lightning_patchcore import GatedPatchCore
from hdmap.run.patchcore_run import build_module, cached_features, fit_and_score


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
    assert 0.0 <= metrics["holdout"]["accuracy"] <= 1.0
    assert metrics["gate"]["kind"] == "intensity" and metrics["gate"]["accuracy"] is not None  # sampling uses it


def test_gated_mode_scores_against_the_routed_bank(tiny_config, domain_c, feature_cache):
    module, outputs, _ = fit_and_score(_config(tiny_config, bank_mode="gated"), domain_c, feature_cache)
    _, test_grids = cached_features(tiny_config, domain_c, feature_cache)
    embedding = module.core.embed([torch.from_numpy(np.array(g)) for g in test_grids])
    cold = module.core._bank_scores("cold", embedding)[0]
    warm = module.core._bank_scores("warm", embedding)[0]
    expected = torch.where(outputs["route"].bool(), warm, cold)
    assert torch.allclose(outputs["scores"], expected)


def test_soft_calibration_is_a_z_score(tiny_config, domain_c, feature_cache):
    module, _, _ = fit_and_score(_config(tiny_config, bank_mode="soft"), domain_c, feature_cache)
    mean, std = module.core.calibration[0]
    assert std > 0 and mean > 0  # raw distances are positive; z = (s - mean) / std


def test_bank_size_follows_coreset_ratio(tiny_config, domain_c, feature_cache):
    module, _, _ = fit_and_score(_config(tiny_config, bank_mode="mixed", coreset_ratio=0.25), domain_c,
                                 feature_cache)
    train_grids, _ = cached_features(tiny_config, domain_c, feature_cache)
    patches_per_map = np.prod(train_grids[0].shape[2:])
    assert len(module.core.banks["mixed"]) == round(0.25 * 8 * patches_per_map)


def test_too_few_references_names_condition(tiny_config, domain_c, feature_cache):
    with pytest.raises(ValueError, match="references of condition '(cold|warm)'"):
        fit_and_score(_config(tiny_config, bank_mode="gated", shots=500), domain_c, feature_cache)


def test_one_sided_gate_errors_in_gated_and_falls_back_in_soft(tiny_config, domain_c, feature_cache, tmp_path):
    gate = {"kind": "intensity", "threshold": 100.0}
    with pytest.raises(ValueError, match="one condition"):
        fit_and_score(_config(tiny_config, bank_mode="gated", gate=gate), domain_c, feature_cache)
    with pytest.warns(UserWarning, match="one condition"):
        module, _, metrics = fit_and_score(_config(tiny_config, bank_mode="soft", gate=gate), domain_c, feature_cache)
    assert set(module.core.banks) == {"mixed"} and metrics["notes"]
    torch.save(lightning_checkpoint(module), tmp_path / "fallback.ckpt")  # reloads as what was fitted
    reloaded = GatedPatchCore.load_from_checkpoint(tmp_path / "fallback.ckpt", map_location="cpu")
    assert set(reloaded.core.banks) == {"mixed"} and len(reloaded.core.banks["mixed"]) > 0


def test_unfitted_model_refuses_to_score(tiny_config, domain_c, feature_cache):
    module = build_module(tiny_config)
    _, test_grids = cached_features(tiny_config, domain_c, feature_cache)
    with pytest.raises(RuntimeError, match="empty"):
        module.core.score(test_grids, domain_c.test_maps)


def test_checkpoint_round_trip_identical_scores(tiny_config, domain_c, feature_cache, tmp_path):
    module, outputs, _ = fit_and_score(_config(tiny_config, bank_mode="soft", context_ks=[0, 1]), domain_c,
                                       feature_cache)
    torch.save(lightning_checkpoint(module), tmp_path / "model.ckpt")
    reloaded = GatedPatchCore.load_from_checkpoint(tmp_path / "model.ckpt", map_location="cpu")
    _, test_grids = cached_features(tiny_config, domain_c, feature_cache)
    again = reloaded.core.score(test_grids, domain_c.test_maps, domain_c.test_conditions)
    assert torch.equal(again["scores"], outputs["scores"])


def test_lightning_trainer_fit_and_test(tiny_config, synth_root, tmp_path):
    import lightning as L

    from hdmap.data.datamodule import HDMAPDataModule

    module = build_module(_config(tiny_config, bank_mode="gated"))
    dm = HDMAPDataModule(str(synth_root), "C", module.transform(), shots=None, batch_size=16)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert len(module.core.banks["cold"]) > 0 and len(module.core.banks["warm"]) > 0
    trainer.test(module, datamodule=dm, verbose=False)
    scores = torch.cat([o["scores"] for o in module.outputs])
    assert scores.shape == (len(dm.holdout_items),)
    assert module.outputs[0]["anomaly_maps"].shape[1:] == (31, 95)  # upsampled to the map's own size
    trainer.save_checkpoint(tmp_path / "trainer.ckpt")
    reloaded = GatedPatchCore.load_from_checkpoint(tmp_path / "trainer.ckpt", map_location="cpu")
    trainer.test(reloaded, datamodule=dm, verbose=False)
    assert torch.equal(torch.cat([o["scores"] for o in reloaded.outputs]), scores)
