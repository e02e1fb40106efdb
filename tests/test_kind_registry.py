"""A new model kind is one folder and one registry line: a toy kind (tests/toy_kind/: a row-energy z-score with its
torch core, Lightning module, settings tree, pipeline and registry entry) runs through `hdmap fit-eval`, `hdmap eval`
and a Tune trial, and is listed in the generated settings reference, without touching any other file."""
import json
import sys
from pathlib import Path

import pytest

from hdmap.cli.main import main
from hdmap.config import ConfigError
from hdmap.kinds import registry

sys.path.insert(0, str(Path(__file__).parent))  # where the toy kind's folder lies (a kind of hdmap/kinds/ needs not)
from toy_kind.kind import TOY  # noqa: E402


@pytest.fixture
def toy_registered():
    registry.register(TOY)  # the one line a new kind adds to hdmap/kinds/registry.py
    yield
    registry.KINDS.pop("toy")


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


def test_a_toy_kind_is_listed_in_the_generated_settings_reference(toy_registered):
    from hdmap.settings_docs import settings_markdown

    text = settings_markdown()
    assert "## `toy`" in text and "| `toy.rows` | int | `31` |" in text
    assert "## `toy`" not in Path("docs/settings.md").read_text()  # the reference of the registered kinds only


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
