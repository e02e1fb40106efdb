"""Warm start (the defaults first), the winner against the defaults, and parameter importances (no Ray)."""
import math
from pathlib import Path

import pytest

from hdmap.kinds.registry import settings_of
from hdmap.config import ConfigError, merge
from hdmap.kinds.registry import default_config, validate
from hdmap.tune.importance import importances
from hdmap.tune.spaces import load_space, trial_overrides
from hdmap.kinds.patchcore.kind import BAND_ONLY_LABEL
from hdmap.tune.start_points import DEFAULTS_LABEL, label_of, project, start_points
from hdmap.tune.summary import rank_key, verdict

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


@pytest.mark.parametrize("name", ["hdmap_patchcore_quick", "hdmap_patchcore", "patchcore_quick", "patchcore"])
def test_the_defaults_point_reproduces_the_search_base_config_exactly(name, capsys):
    """Quick spaces on the embedded data, full spaces on real data (DINOv2 presets), as `hdmap tune` uses them."""
    space = load_space(SPACES / f"{name}.yaml")
    base = space.base_config(real_data="quick" not in name)
    starts = start_points(space, base)
    assert starts[0]["label"] == DEFAULTS_LABEL
    assert validate(merge(base, trial_overrides(starts[0]["point"]))) == base
    assert "now includes" not in capsys.readouterr().err  # shipped spaces hold their defaults as they are


def test_the_embedded_search_defaults_are_fit_evals_defaults():
    """The quick space on the embedded data: its defaults trial is `hdmap fit-eval` with no options."""
    space = load_space(SPACES / "hdmap_patchcore_quick.yaml")
    assert space.base_config() == validate(default_config())


def test_a_space_that_names_a_backbone_gets_its_presets_with_data_root():
    """--data-root defaults to DINOv2's taps; a space fixing EfficientNet-Lite0 must get Lite0's taps instead."""
    space = load_space(SPACES / "hdmap_patchcore_quick.yaml")
    base = space.base_config(real_data=True)
    assert base["backbone"]["name"] == "tf_efficientnet_lite0" and base["backbone"]["taps"] == [2, 3]
    assert base["image_size"] == 384


def test_a_default_outside_the_space_is_added_with_a_note(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("model_name: hdmap_patchcore\nparams:\n  model.shots: {choice: [4, 8]}\n"
                    "  model.coreset_ratio: {uniform: [0.2, 0.5]}\n")
    space = load_space(path)
    point = project(space, space.base_config(), DEFAULTS_LABEL)
    assert point == {"model.shots": None, "model.coreset_ratio": 0.1}
    assert space.params[0].values == [4, 8, None] and space.params[1].values == [0.1, 0.5]
    assert "model.shots" in capsys.readouterr().err


def test_start_files_follow_the_defaults_and_may_set_only_searched_keys(tmp_path):
    space = load_space(SPACES / "hdmap_patchcore_quick.yaml")
    base = space.base_config()
    good = tmp_path / "good.yaml"
    good.write_text("- {model.shots: 16, model.bank_mode: gated}\n- model: {image_score: max}\n")
    starts = start_points(space, base, [str(good)])
    assert [s["label"] for s in starts] == [DEFAULTS_LABEL, BAND_ONLY_LABEL, "good.yaml#1", "good.yaml#2"]
    assert starts[2]["point"]["model.shots"] == 16 and starts[2]["point"]["model.bank_mode"] == "gated"
    assert "model.top_fraction" not in starts[3]["point"]  # inactive once image_score is max
    assert label_of(starts[2]["point"], starts) == "good.yaml#1"
    assert label_of({**starts[2]["point"], "model.shots": 8}, starts) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("model.distance: cosine\n")  # not searched by the quick space
    with pytest.raises(ConfigError, match="model.distance"):
        start_points(space, base, [str(bad)])


def _row(objective, start=None, trial="t", timestamp=0):
    return {"trial_id": trial, "objective": objective, "objective_se": 0.02, "start": start, "timestamp": timestamp}


def test_the_defaults_win_ties_and_the_verdict_says_who_won():
    rows = [_row(0.80, trial="a", timestamp=1), _row(0.80, DEFAULTS_LABEL, "d", timestamp=2),
            _row(0.70, trial="b"), _row(-math.inf, trial="c")]
    rows.sort(key=rank_key)
    assert rows[0]["trial_id"] == "d" and rows[-1]["trial_id"] == "c"
    assert verdict(rows)["defaults_won"] is True
    rows = sorted([_row(0.85, trial="a"), _row(0.80, DEFAULTS_LABEL, "d")], key=rank_key)  # se 0.02 each
    out = verdict(rows)
    assert out["defaults_won"] is False and out["winner"]["trial_id"] == "a" and out["gain"] == pytest.approx(0.05)
    close = sorted([_row(0.815, trial="a"), _row(0.80, DEFAULTS_LABEL, "d")], key=rank_key)
    kept = verdict(close)  # +1.5 points < one standard error (2 points): the defaults are kept
    assert kept["winner"]["trial_id"] == "d" and kept["kept_within_margin"] and kept["best_trial"] == "a"
    assert verdict(close, margin_se=0)["winner"]["trial_id"] == "a"
    assert kept["rule_note"] is None
    for unknown in (None, float("nan")):  # the rule cannot run: said in the verdict, not skipped in silence
        rows = sorted([_row(0.815, trial="a"), {**_row(0.80, DEFAULTS_LABEL, "d"), "objective_se": unknown}],
                      key=rank_key)
        out = verdict(rows)
        assert out["winner"]["trial_id"] == "a" and "standard error is unknown" in out["rule_note"]


def test_importances_rank_the_parameter_that_drives_the_objective():
    space = load_space(SPACES / "hdmap_patchcore_quick.yaml")
    rows = []
    for i in range(24):
        shots = [8, 16, 32, 64, None][i % 5]
        rows.append({"objective": 0.5 + (0.4 if shots is None else 0.0) + 0.001 * (i % 3),
                     "config": {"model.shots": shots, "model.reweight_k": 1 + i % 9, "model.bank_mode":
                                ["mixed", "gated", "soft"][i % 3]}})
    ranked = importances(space, rows)
    assert list(ranked)[0] == "model.shots"
    assert importances(space, rows[:2]) == {}


def test_repeats_average_the_objective_over_reference_seeds(domain_c, tiny_config, tmp_path):
    """--repeats 3: the trial objective is the mean of three seeds' objectives, each what fit-eval's path gives
    for that seed alone; the checkpointed model is the config's own seed."""
    from hdmap.evaluation.protocol import tune_metrics
    from hdmap.features.cache import FeatureCache
    from hdmap.kinds.registry import fit_and_score
    from hdmap.kinds.patchcore.kind import fit_over_seeds

    cache = FeatureCache(tmp_path / "cache", progress=False)
    config = validate(merge(tiny_config, {"model": {"shots": 2, "coreset_ratio": 0.3}}))
    single = []
    for seed in range(3):
        _, outputs, _ = fit_and_score(merge(config, {"model": {"seed": seed}}), domain_c, cache, tune_only=True)
        scored = outputs["index"].numpy()
        single.append(tune_metrics(outputs["scores"].numpy(), domain_c.test_labels[scored],
                                   [domain_c.test_conditions[i] for i in scored])["auroc"])
    module, metrics, report = fit_over_seeds(settings_of(config), domain_c, cache, "auroc", repeats=3)
    assert report["objective_per_seed"] == pytest.approx(single)
    assert report["objective"] == pytest.approx(sum(single) / 3)
    assert len(set(single)) > 1  # the seeds draw different references: averaging changes the objective
    assert module.core.config.seed == 0 and metrics["tune"]["auroc"] == pytest.approx(single[0])
    assert fit_over_seeds(settings_of(config), domain_c, cache, "auroc", repeats=1)[2]["objective"] == pytest.approx(single[0])


def test_a_sampled_trial_that_repeats_the_defaults_is_not_labelled_the_defaults():
    from hdmap.tune.summary import one_label_per_start, trial_number

    assert trial_number("/x/trainable_1a2b3c4d_12_model.shots=4_2026") == 12
    rows = [{**_row(0.9, DEFAULTS_LABEL, "late", timestamp=5), "number": 7},  # TPE drew the defaults' config again
            {**_row(0.8, DEFAULTS_LABEL, "first", timestamp=1), "number": 1}]
    rows = one_label_per_start(rows)
    by_id = {r["trial_id"]: r for r in rows}
    assert by_id["first"]["start"] == DEFAULTS_LABEL
    assert by_id["late"]["start"] is None and by_id["late"]["repeats_config_of"] == "first"
