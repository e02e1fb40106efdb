"""Fit on train, score every test map, one run record."""
import torch

from hdmap.models.checkpoint_files import load_data_only
from hdmap.run.record import gate_block, run_record
from toy_kind.module import RowEnergyModule

TIMING = {"features": 0.0, "fit": 0.0, "predict": 0.0}


def scored(module: RowEnergyModule, run, data, indices=None):
    maps = data.test_maps if indices is None else data.test_maps[indices]
    outputs = {"scores": module.core.score(maps), "patch_maps": torch.as_tensor(maps).float()}
    if indices is not None:
        outputs["index"] = torch.as_tensor(indices)
    return outputs, run_record(run, data, outputs, gate_block(None), [], TIMING)


def fit_and_score(run, data, tune_only: bool = False):
    module = RowEnergyModule(run.toy.rows)
    module.core.fit(data.train_maps)
    return (module, *scored(module, run, data, data.split.tune if tune_only else None))


def score_saved(path, run, data):
    module = RowEnergyModule(run.toy.rows)
    module.load_state_dict(load_data_only(path)["state_dict"])
    return scored(module, run, data)
