"""A run's settings become one frozen dataclass tree at the edge (`settings_of`); kinds and pipelines receive it, and
records keep its plain mapping, which turns back into the same tree."""
import dataclasses
import json

import pytest

from hdmap.config import ConfigError, merge, plain
from hdmap.features.backbones import BackboneSpec
from hdmap.kinds.registry import KINDS, default_config, settings_of
from hdmap.kinds.patchcore.settings import PatchCoreSettings
from hdmap.kinds.band.settings import BandRun
from hdmap.kinds.feclip.settings import FEClipRun
from hdmap.kinds.patchcore.settings import PatchCoreRun
from hdmap.run.settings import SplitSettings


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("real_data", [False, True])
def test_each_kinds_defaults_round_trip_through_the_tree(name, real_data):
    config = default_config(real_data=real_data, model_name=name)
    run = settings_of(config)
    assert isinstance(run, KINDS[name].settings)
    assert json.loads(json.dumps(plain(run))) == json.loads(json.dumps(config))  # the record is the config
    assert settings_of(plain(run)) == run


def test_the_tree_is_typed_and_frozen_all_the_way_down():
    run = settings_of(merge(default_config(), {"backbone": {"taps": [1, 2]}, "model": {"context_ks": [0, 3],
                                                                                      "gate": {"kind": "oracle"}}}))
    assert isinstance(run, PatchCoreRun) and isinstance(run.backbone, BackboneSpec)
    assert isinstance(run.model, PatchCoreSettings) and isinstance(run.split, SplitSettings)
    assert run.backbone.taps == (1, 2) and run.model.context_ks == (0, 3) and run.model.gate.kind == "oracle"
    for holder, field in ((run, "image_size"), (run.model, "shots"), (run.model.gate, "kind"),
                          (run.model.band, "runs"), (run.split, "seed")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(holder, field, None)


def test_a_trees_own_cross_setting_check_names_its_key():
    bad = merge(default_config(), {"model": {"band": {"gate": {"kind": "feature"}, "per_condition": True}}})
    with pytest.raises(ConfigError, match=r"^model\.band: gate\.kind 'feature'"):
        settings_of(bad)


def test_a_tree_is_passed_through_and_each_kind_gets_its_own():
    run = settings_of(default_config(model_name="band"))
    assert settings_of(run) is run and isinstance(run, BandRun)
    assert isinstance(settings_of(default_config(model_name="feclip")), FEClipRun)
