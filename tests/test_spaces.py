from pathlib import Path

import optuna
import pytest

from hdmap.config import ConfigError
from hdmap.tune.spaces import load_space, suggest, trial_overrides

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


@pytest.mark.parametrize("name", ["hdmap_patchcore.yaml", "hdmap_patchcore_quick.yaml", "patchcore.yaml",
                                  "patchcore_quick.yaml", "feclip.yaml", "feclip_quick.yaml"])
def test_shipped_spaces_parse(name):
    space = load_space(SPACES / name)
    assert space.params and space.metric == "accuracy_cv"  # the objective that estimates holdout


def test_conditional_parameters_only_when_active():
    space = load_space(SPACES / "hdmap_patchcore.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen, fusions = [], []
    for _ in range(40):
        trial = study.ask()
        suggest(trial, space)
        params = trial.params
        fusions.append(params["model.fusion"])
        assert ("model.band.runs" in params) == (params["model.fusion"] != "none")
        assert ("model.fusion_weight" in params) == (params["model.fusion"] == "sum")
        if params["model.fusion"] == "band_only":  # the band detector alone: no PatchCore or backbone setting
            assert not any(key.startswith(("model.gate", "image_size", "backbone", "model.shots")) for key in params)
            study.tell(trial, 0.5)
            continue
        seen.append(params["model.gate.kind"])
        assert ("model.gate.percentile" in params) == (params["model.gate.kind"] == "intensity")
        assert ("model.soft_combine" in params) == (params["model.bank_mode"] == "soft")
        overrides = trial_overrides(params)
        assert isinstance(overrides["model"]["context_ks"], list)  # JSON-encoded lists come back as lists
        study.tell(trial, 0.5)
    assert {"intensity", "feature", "discover"} <= set(seen)
    assert set(fusions) == {"auto", "none", "sum", "max", "band_only"}


def _write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("params:\n  model.bank_mode: {choice: []}\n", "model.bank_mode.*non-empty"),
    ("params:\n  model.coreset_ratio: {loguniform: [0, 0.5]}\n", "model.coreset_ratio.*low > 0"),
    ("params:\n  model.reweight_k: {int: [9, 1]}\n", "model.reweight_k.*low < high"),
    ("params:\n  model.colour: {choice: [red]}\n", "model.colour"),
    ("params:\n  model.shots: {normal: [1, 2]}\n", "model.shots.*unknown field"),
    ("params:\n  model.gate.percentile: {uniform: [50, 99], when: {model.gate.kind: intensity}}\n",
     "not an earlier parameter"),
    ("params: [oops\n", "not valid YAML"),
    ("metric: f2\n", "metric"),
    ("params:\n  model.bank_mode: {choice: [mixed, gated, triple]}\n",  # a later choice, not only the first
     "'model.bank_mode' value 'triple'.*expects one of mixed, gated, soft"),
    ("params:\n  model.top_fraction: {uniform: [0.01, 1.5]}\n", "'model.top_fraction' value 1.5.*expects"),
    ("params:\n  model.bank_mode: {choice: [mixed, gated]}\n  model.bank_mode: {choice: [soft]}\n",
     "duplicate key 'model.bank_mode'"),  # plain YAML would keep the last one in silence
    ("params:\n  - model.bank_mode: {choice: [mixed]}\n", "`params:` must be a mapping"),
    ("fixed:\n  model: {bank_mode: triple}\n", "space.yaml: fixed: .*'model.bank_mode' expects one of"),
    ("params:\n  model.bank_mode: {choice: [mixed, gated]}\n"
     "  model.soft_combine: {choice: [min, posterior], when: {model.bank_mode: soft}}\n",
     "'when' asks for model.bank_mode='soft', which 'model.bank_mode' never takes"),
])
def test_bad_spaces_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_space(_write(tmp_path, text))


def test_a_backbone_with_a_fixed_input_size_pins_it_in_searches_and_runs(capsys):
    """open_clip towers have fixed positional embeddings: a search drops its image_size / resize choices with a
    note, and a run config with another size is refused by name."""
    from hdmap.kinds.registry import default_config, validate
    from hdmap.tune.runner import fit_space_to_backbone

    space = load_space(SPACES / "hdmap_patchcore_quick.yaml")
    base = space.base_config(backbone="clip_vit_b16")
    fit_space_to_backbone(space, base, "clip_vit_b16")
    assert not {"image_size", "resize", "backbone.taps"} & {p.key for p in space.params}
    assert "image_size" in capsys.readouterr().err and (base["image_size"], base["resize"]) == (224, "bilinear")
    validate(base)
    with pytest.raises(ConfigError, match="clip_vit_b16 takes 224 px squares only"):
        validate({**default_config(backbone="clip_vit_b16"), "image_size": 448})
    own = load_space(SPACES / "hdmap_patchcore_quick.yaml")  # its own EfficientNet: nothing pinned
    fit_space_to_backbone(own, own.base_config(), None)
    assert {"image_size", "backbone.taps"} <= {p.key for p in own.params}


def test_a_search_extracts_every_tap_its_space_can_ask_for_in_one_pass():
    from hdmap.tune.runner import space_taps

    space = load_space(SPACES / "hdmap_patchcore.yaml")
    assert space_taps(space, space.base_config(real_data=True)) == (6, 8, 9, 11)
    quick = load_space(SPACES / "patchcore_quick.yaml")  # no searched taps: the base ones
    assert space_taps(quick, quick.base_config()) == (2, 3)
