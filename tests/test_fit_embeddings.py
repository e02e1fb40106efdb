"""The fit epoch streams each reference map's patches to its bank (held whole up to the bank's window: one copy,
fitted without another) in the order read, so scores do not move; the calibration maps' embeddings are kept."""
import copy

import numpy as np
import pytest
import torch

from hdmap.kinds.registry import settings_of
from hdmap.features.feature_datamodule import CALIBRATION, REFERENCE
from hdmap.kinds.registry import fit_and_score
from hdmap.models import bank_stream, memory_bank
from hdmap.models.fit_embeddings import FitEmbeddings


class Recorder:
    """A stand-in for BankStream: what each bank received, in order."""

    def __init__(self):
        self.patches, self.tags = [], []

    def add(self, patches, tags):
        self.patches.append(patches.clone())
        self.tags.append(tags.clone())


def _open_by_code(codes, per_map, like):
    return {name: (Recorder(), np.flatnonzero(np.asarray(codes) == code)) for code, name in enumerate(("cold", "warm"))}


def test_references_reach_their_bank_in_the_order_read_and_calibration_stays_as_read():
    roles = np.array([REFERENCE] * 5 + [CALIBRATION] * 3)
    codes = np.array([1, 0, 1, 0, 0, 1, 0, 1])
    fit = FitEmbeddings(roles, codes, _open_by_code)
    embedding = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 2, 1, 3).contiguous()  # value = item
    fit.add(embedding[:3], torch.arange(3, dtype=torch.float32).view(3, 1, 1).expand(3, 4, 4))
    fit.add(embedding[3:], torch.arange(3, 8, dtype=torch.float32).view(5, 1, 1).expand(5, 4, 4))
    fit.check_complete()
    cold, warm = (torch.cat(fit.streams[name].patches) for name in ("cold", "warm"))
    assert cold[::3, 0].tolist() == [1, 3, 4] and warm[::3, 0].tolist() == [0, 2]  # 3 patches a map, map order kept
    assert torch.cat(fit.streams["warm"].tags).tolist() == [1] * 6
    calibration, maps, cal_codes = fit.calibration()
    assert calibration[:, 0, 0, 0].tolist() == [5, 6, 7] and cal_codes.tolist() == [1, 0, 1]
    assert maps[:, 0, 0].tolist() == [5, 6, 7] and calibration.shape == (3, 2, 1, 3)  # (C, D, h, w) again


def test_an_epoch_that_does_not_match_the_plan_is_an_error():
    fit = FitEmbeddings(np.zeros(2, np.int64), np.zeros(2, np.int64), _open_by_code)
    with pytest.raises(RuntimeError, match="1 of the 2 planned maps"):
        fit.add(torch.zeros(1, 2, 1, 1), torch.zeros(1, 3, 3))
        fit.check_complete()


@pytest.mark.parametrize("mode", ["mixed", "gated"])
def test_every_bank_is_fitted_on_its_stream_buffer_without_a_copy(tiny_config, domain_c, feature_cache, monkeypatch,
                                                                 mode):
    buffers, fitted = [], []
    original_init, original_fit = bank_stream.BankStream.__init__, memory_bank.MemoryBank.fit

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        buffers.append(self.buffer.untyped_storage().data_ptr())

    def fit(self, patches, *args, **kwargs):
        fitted.append((patches.untyped_storage().data_ptr(), patches.is_contiguous()))
        return original_fit(self, patches, *args, **kwargs)

    monkeypatch.setattr(bank_stream.BankStream, "__init__", init)
    monkeypatch.setattr(memory_bank.MemoryBank, "fit", fit)
    config = copy.deepcopy(tiny_config)
    config["model"]["bank_mode"] = mode
    fit_and_score(config, domain_c, feature_cache)
    assert len(fitted) == (1 if mode == "mixed" else 2)
    assert [storage for storage, _ in fitted] == buffers and all(c for _, c in fitted)  # the stream's own buffer


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
