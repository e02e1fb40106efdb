"""One copy of the pre-coreset bank: the fit epoch writes every embedding into one buffer, and each bank is fitted on
a slice of it (same storage, no copy), in the order a per-condition selection gives (so scores do not move)."""
import copy

import numpy as np
import pytest
import torch

from hdmap.kinds.registry import settings_of
from hdmap.features.feature_datamodule import CALIBRATION, REFERENCE
from hdmap.kinds.registry import fit_and_score
from hdmap.models import fit_embeddings, memory_bank
from hdmap.models.fit_embeddings import FitEmbeddings


def test_references_are_ordered_by_condition_keeping_their_order_and_calibration_stays_as_read():
    roles = np.array([REFERENCE] * 5 + [CALIBRATION] * 3)
    codes = np.array([1, 0, 1, 0, 0, 1, 0, 1])
    fit = FitEmbeddings(roles, codes, by_code=True)
    embedding = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 2, 1, 3).contiguous()  # value = item
    fit.add(embedding[:3], torch.zeros(3, 4, 4))
    fit.add(embedding[3:], torch.zeros(5, 4, 4))
    fit.check_complete()
    references, ref_codes = fit.references()
    assert references[:, 0, 0, 0].tolist() == [1, 3, 4, 0, 2] and ref_codes.tolist() == [0, 0, 0, 1, 1]
    calibration, _, cal_codes = fit.calibration()
    assert calibration[:, 0, 0, 0].tolist() == [5, 6, 7] and cal_codes.tolist() == [1, 0, 1]
    assert calibration.shape == (3, 2, 1, 3)  # (C, D, h, w) again
    mixed = FitEmbeddings(roles, codes, by_code=False)
    mixed.add(embedding, torch.zeros(8, 4, 4))
    assert mixed.references()[0][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]  # one bank: the order read


def test_an_epoch_that_does_not_match_the_plan_is_an_error():
    fit = FitEmbeddings(np.zeros(2, np.int64), np.zeros(2, np.int64), by_code=False)
    with pytest.raises(RuntimeError, match="1 of the 2 planned maps"):
        fit.add(torch.zeros(1, 2, 1, 1), torch.zeros(1, 3, 3))
        fit.check_complete()


@pytest.mark.parametrize("mode", ["mixed", "gated"])
def test_every_bank_is_fitted_on_a_slice_of_the_one_buffer(tiny_config, domain_c, feature_cache, monkeypatch, mode):
    buffers, fitted = [], []
    original_add, original_fit = FitEmbeddings.add, memory_bank.MemoryBank.fit

    def add(self, embedding, maps):
        original_add(self, embedding, maps)
        buffers.append(self.buffer.untyped_storage().data_ptr())

    def fit(self, patches, *args, **kwargs):
        fitted.append((patches.untyped_storage().data_ptr(), patches.is_contiguous(), patches.shape))
        return original_fit(self, patches, *args, **kwargs)

    monkeypatch.setattr(fit_embeddings.FitEmbeddings, "add", add)
    monkeypatch.setattr(memory_bank.MemoryBank, "fit", fit)
    config = copy.deepcopy(tiny_config)
    config["model"]["bank_mode"] = mode
    fit_and_score(config, domain_c, feature_cache)
    assert len(set(buffers)) == 1 and len(fitted) == (1 if mode == "mixed" else 2)
    assert all(storage == buffers[0] and contiguous for storage, contiguous, _ in fitted)  # views, not copies


def test_a_fit_epoch_over_a_datamodule_its_plan_did_not_make_is_refused(tiny_config, domain_c, feature_cache):
    """Fitting is prepare_fit, then Trainer.fit on the datamodule it returned; any other order is an error."""
    from hdmap.features.feature_datamodule import FeatureDataModule
    from hdmap.kinds.patchcore.kind import build_module
    from hdmap.kinds.patchcore.pipeline import cached_features
    from hdmap.run.trainer import make_trainer

    config = copy.deepcopy(tiny_config)
    config["model"].update(input_norm="none", band_weight=0.0, fusion="none")  # no condition statistics needed
    train_grids, _ = cached_features(settings_of(config), domain_c, feature_cache)
    module = build_module(settings_of(config))
    with pytest.raises(RuntimeError, match="prepare_fit"):  # no plan yet
        make_trainer("cpu").fit(module, datamodule=FeatureDataModule(train_grids, domain_c.train_maps))
    features = module.prepare_fit(train_grids, domain_c.train_maps)
    other = build_module(settings_of(config))
    other.prepare_fit(train_grids, domain_c.train_maps)
    with pytest.raises(RuntimeError, match="prepare_fit"):  # another model's plan
        make_trainer("cpu").fit(other, datamodule=features)
    make_trainer("cpu").fit(module, datamodule=features)
    assert len(module.core.banks["mixed"]) > 0
