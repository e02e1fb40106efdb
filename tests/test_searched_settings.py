"""Every parameter of every shipped search space changes what the trial objective is computed from.

For each parameter: two of its values (the first two choices, or both ends of a range), with the parameters its
`when` names set so that it is active, fitted and scored on tiny data by the trial's own path
(`pipeline.fit_and_score(..., tune_only=True)`, which the Tune trainables call); the tune scores must differ.
A searched setting that no code reads fails here.
"""
import json

import pytest
import torch

from hdmap.kinds.feclip.model import TINY_CLIP
from hdmap.config import merge
from hdmap.kinds.registry import validate
from hdmap.kinds.registry import fit_and_score
from hdmap.tune.runner import SPACES_DIR
from hdmap.tune.spaces import _encode, load_space, trial_overrides

from conftest import TINY_BACKBONE

PATCHCORE_SPACES = ["hdmap_patchcore", "hdmap_patchcore_quick", "patchcore", "patchcore_quick"]
FECLIP_SPACES = ["feclip", "feclip_quick"]
BAND_SPACES = ["band", "band_quick"]
# The tiny test models stand in for the spaces' real ones; their tap indices stand in for the spaces' taps.
TINY_VALUES = {"backbone.taps": [[0], [1]], "feclip.taps": [[1], [2]], "model.bank_size": [20, 60]}
# Where a setting acts only through another. Gate settings act through the train split (references) and the
# gate posterior of soft banks; on well separated conditions every gate splits and routes alike, so they are
# checked on maps whose warm gain (1.08) makes the conditions overlap, with the non-bimodal fallback off.
CONTEXT = {"model.gate.": {"model.bank_mode": "soft", "model.soft_combine": "posterior",
                           "model.gate_fallback": False},
           # 0.2 % and 5 % of the tiny 112 px grid are both one patch; at 448 px they are different counts
           "model.top_fraction": {"image_size": 448},
           # fusion auto may choose PatchCore's z alone on tune, and then no band setting reaches the score
           "model.band.": {"model.fusion": "max"}}
OVERLAPPING = ("model.gate.",)


@pytest.fixture(scope="module")
def overlapping_c(tmp_path_factory):
    from hdmap.data.synth import SynthConfig, write_dataset
    from hdmap.data.domain import load_domain

    root = tmp_path_factory.mktemp("overlapping")
    write_dataset(root, SynthConfig(n_train=40, n_test=40, seed=3, domains="C", warm_gain=1.08))
    return load_domain(str(root), "C", root / "split.json")


def _cases(names):
    cases = []
    for name in names:
        space = load_space(SPACES_DIR / f"{name}.yaml")
        for param in space.params:
            cases.append(pytest.param(name, param.key, id=f"{name}:{param.key}"))
    return cases


def _two_values(param):
    values = TINY_VALUES.get(param.key, param.values)
    return values[0], values[1]


def _active_setting(space, param) -> dict:
    setting = {}
    for prefix, extra in CONTEXT.items():
        if param.key.startswith(prefix):
            setting.update(extra)
    for name, wanted in param.when.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if setting.get(name) not in allowed:
            setting[name] = allowed[0]
    return setting


def _tiny_base(space) -> dict:
    config = space.base_config()
    if space.model_name == "band":  # no backbone: the space's own settings on the tiny data
        return config
    if space.model_name == "feclip":
        return merge(config, {"image_size": 32, "feclip": {**TINY_CLIP, "mix": 0.3},
                              "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "linear_lr": 3e-3}})
    config["backbone"] = dict(TINY_BACKBONE)
    return merge(config, {"image_size": 112, "model": {"shots": 4, "coreset_ratio": 0.5, "bank_size": None,
                                                              "calibration_maps": 6}})


_SCORES: dict[str, torch.Tensor] = {}


def _tune_scores(config, data, cache):
    key = json.dumps([config, data.root], sort_keys=True, default=str)
    if key not in _SCORES:
        _, outputs, metrics = fit_and_score(config, data, cache, tune_only=True)
        assert metrics["holdout"] is None or config["model_name"] == "feclip"
        _SCORES[key] = outputs["scores"].double()
    return _SCORES[key]


def _check(space_name, key, domain_c, cache):
    space = load_space(SPACES_DIR / f"{space_name}.yaml")
    param = next(p for p in space.params if p.key == key)
    base = _tiny_base(space)
    setting = _active_setting(space, param)
    first, second = _two_values(param)
    trials = [{**{k: _encode(v) for k, v in setting.items()}, key: _encode(value)} for value in (first, second)]
    configs = [validate(merge(base, trial_overrides(trial))) for trial in trials]
    scores = [_tune_scores(config, domain_c, cache) for config in configs]
    assert scores[0].shape == scores[1].shape
    assert not torch.allclose(scores[0], scores[1], rtol=1e-6, atol=1e-9), \
        f"{space_name}: '{key}' = {first!r} and {second!r} give the same tune scores"


@pytest.mark.parametrize("space_name, key", _cases(PATCHCORE_SPACES))
def test_patchcore_searched_setting_changes_the_objective(space_name, key, domain_c, overlapping_c, feature_cache):
    _check(space_name, key, overlapping_c if key.startswith(OVERLAPPING) else domain_c, feature_cache)


@pytest.mark.parametrize("space_name, key", _cases(FECLIP_SPACES))
def test_feclip_searched_setting_changes_the_objective(space_name, key, domain_c):
    _check(space_name, key, domain_c, None)


@pytest.mark.parametrize("space_name, key", _cases(BAND_SPACES))
def test_band_searched_setting_changes_the_objective(space_name, key, domain_c):
    _check(space_name, key, domain_c, None)
