"""A new model kind is one module and one registry line: a toy kind (a row-energy z-score, written here) runs
through `hdmap fit-eval`, `hdmap eval` and a Tune trial without touching any other file."""
import json
from dataclasses import dataclass

import lightning as L
import pytest
import torch

from hdmap.cli.main import main
from hdmap.config import SPLIT_DEFAULT, ConfigError, plain
from hdmap.evaluation.protocol import protocol_metrics, tune_metrics
from hdmap.kinds import registry
from hdmap.kinds.kind import ModelKind, trial_values
from hdmap.models.checkpoint_files import load_data_only
from hdmap.run.run_settings import SplitSettings
from hdmap.setting_rules import setting


# --- the toy kind's module --------------------------------------------------------------------------------------
class RowEnergy(L.LightningModule):
    """Score of a map: the largest |row mean - train row mean| / train row std over its rows."""

    def __init__(self, rows: int = 31):
        super().__init__()
        self.register_buffer("mean", torch.zeros(rows))
        self.register_buffer("std", torch.ones(rows))

    def fit(self, maps) -> "RowEnergy":
        rows = torch.as_tensor(maps).float().mean(dim=2)
        self.mean, self.std = rows.mean(0), rows.std(0).clamp_min(1e-6)
        return self

    def score(self, maps) -> torch.Tensor:
        z = (torch.as_tensor(maps).float().mean(dim=2) - self.mean) / self.std
        return z.abs().amax(dim=1).double()


@dataclass(frozen=True)
class ToySettings:
    rows: int = setting(31, "rows of a map", low=1)


@dataclass(frozen=True)
class ToyRun:
    """The toy kind's settings tree: what its runs receive, typed."""

    model_name: str = setting("toy", "the model kind", choices=("toy",))
    toy: ToySettings = setting(help="the row-energy score", factory=ToySettings)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)


def toy_defaults(real_data=False, backbone=None):
    return {"model_name": "toy", "toy": {"rows": 31}, "split": dict(SPLIT_DEFAULT)}


def toy_validate(run: ToyRun):
    assert isinstance(run, ToyRun), "a kind receives its settings tree, not a mapping"


def toy_metrics(run, data, scores):
    return {"model": "toy", "domain": data.domain, "config": plain(run), "data_root": data.root,
            **protocol_metrics(scores.numpy(), data.test_labels, data.test_conditions, data.split.tune,
                               data.split.holdout)}


def toy_outputs(module, data):
    scores = module.score(data.test_maps)
    return {"scores": scores, "patch_maps": torch.as_tensor(data.test_maps).float()}


def toy_fit_and_score(run, data, cache=None, progress=False, tune_only=False):
    module = RowEnergy(run.toy.rows).fit(data.train_maps)
    outputs = toy_outputs(module, data)
    return module, outputs, toy_metrics(run, data, outputs["scores"])


def toy_score_saved(path, run, data, cache_dir=None, progress=False):
    module = RowEnergy(run.toy.rows)
    module.load_state_dict(load_data_only(path)["state_dict"])
    outputs = toy_outputs(module, data)
    return outputs, toy_metrics(run, data, outputs["scores"])


def toy_trial(run, data, cache, metric, repeats, report):
    module = RowEnergy(run.toy.rows).fit(data.train_maps)
    tune = data.split.tune
    values = tune_metrics(module.score(data.test_maps[tune]).numpy(), data.test_labels[tune],
                          [data.test_conditions[i] for i in tune])
    report(module, {"tune": values}, trial_values(values, metric))


TOY = ModelKind("toy", "row-energy z-score (a test of the registry)", toy_defaults, toy_validate, toy_fit_and_score,
                toy_score_saved, toy_trial, settings=ToyRun)


# --- the one registry line, and the three paths ------------------------------------------------------------------
@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(registry.KINDS, "toy", TOY)


def test_a_toy_kind_runs_fit_eval_and_eval_and_a_tune_trial(toy_registered, synth_root, tmp_path, monkeypatch):
    out = tmp_path / "toy_run"
    assert main(["fit-eval", "--data-root", str(synth_root), "--model", "toy", "--out", str(out)]) == 0
    fitted = json.loads((out / "metrics.json").read_text())
    assert fitted["model"] == "toy" and 0.0 <= fitted["holdout"]["auroc"] <= 1.0
    assert main(["eval", str(out), "--out", str(tmp_path / "toy_eval")]) == 0
    reloaded = json.loads((tmp_path / "toy_eval" / "metrics.json").read_text())
    assert reloaded["holdout"]["auroc"] == fitted["holdout"]["auroc"]  # the saved buffers, not a refit

    from ray import tune

    from hdmap.data.domain import load_domain
    from hdmap.tune import trainables

    reports = []
    monkeypatch.setattr(tune, "report", lambda values, checkpoint=None: reports.append(values))
    data = load_domain(str(synth_root), "C", out / "split.json")
    monkeypatch.setattr(trainables, "_domain", lambda **kwargs: data)
    trainables.trainable({}, registry.default_config(model_name="toy"), {}, "auroc", None)
    assert reports[0]["objective"] == pytest.approx(fitted["tune"]["auroc"])


def test_a_toy_kinds_settings_are_checked_by_the_kind(toy_registered):
    with pytest.raises(ConfigError, match="toy"):
        registry.validate({**registry.default_config(model_name="toy"), "toy": {"rows": 31, "depth": 2}})
    with pytest.raises(ConfigError, match="model_name must be one of"):
        registry.kind_of("not_a_kind")


def test_every_kind_implements_the_typed_interface():
    """Each kind's callables take exactly the parameters the ModelKind protocols name, in their order."""
    import dataclasses
    import inspect
    import typing

    from hdmap.kinds import kind as kind_module
    from hdmap.kinds.registry import KINDS

    hints = typing.get_type_hints(kind_module.ModelKind, vars(kind_module))
    protocols = {f.name: hints[f.name] for f in dataclasses.fields(kind_module.ModelKind)
                 if getattr(hints[f.name], "_is_protocol", False)}
    assert set(protocols) == {"defaults", "validate", "fit_and_score", "score_saved", "trial"}
    for kind in KINDS.values():
        for name, protocol in protocols.items():
            wanted = list(inspect.signature(protocol.__call__).parameters)[1:]  # without self
            assert list(inspect.signature(getattr(kind, name)).parameters) == wanted, (kind.name, name)
