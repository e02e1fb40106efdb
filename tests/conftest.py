import json

import numpy as np
import pytest
import tifffile

from hdmap.data.synth import SynthConfig, write_dataset

DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "HDMAP_ACCELERATOR")  # a trial run in-process sets them (trial_devices.py)


@pytest.fixture(autouse=True)
def _device_env_restored(monkeypatch):
    """A test that runs a trial in this process leaves the GPUs visible to the tests after it."""
    import os

    for name in DEVICE_ENV:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny synthetic HDMAP set (domains A and C) shared by the tests."""
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, SynthConfig(n_train=40, n_test=40, seed=3, domains="AC"))
    return root


@pytest.fixture
def write_tiff(tmp_path):
    def write(name, array):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, np.asarray(array))
        return path
    return write


TINY_BACKBONE = {"name": "dinov2_vits14", "weights": "none", "taps": [0, 1],
                 "model_kwargs": {"depth": 2, "embed_dim": 24, "num_heads": 2}}
# the same backbone as `--set key=value` arguments of the console commands and study scripts
TINY_BACKBONE_SETS = [f"backbone.{key}={json.dumps(value)}" for key, value in TINY_BACKBONE.items()]


@pytest.fixture
def tiny_config():
    """A run config with a tiny random ViT (seconds on a CPU), on the raw maps (no input normalisation, no band
    descriptor) so that each test switches on only what it tests."""
    from hdmap.config import merge
    from hdmap.kinds.registry import default_config
    from hdmap.kinds.patchcore.kind import BASELINE_MODEL
    return merge(default_config(), {"backbone": TINY_BACKBONE, "image_size": 112,
                                     "model": {"shots": 4, "coreset_ratio": 0.5, "bank_size": None, "calibration_maps": 6,
                                               **BASELINE_MODEL}})


@pytest.fixture(scope="session")
def domain_c(synth_root, tmp_path_factory):
    from hdmap.data.domain import load_domain
    return load_domain(str(synth_root), "C", tmp_path_factory.mktemp("split") / "split.json",
                       condition_csv=str(synth_root / "domain_C" / "train_conditions.csv"),
                       condition_csv_partial=True)


@pytest.fixture
def feature_cache(tmp_path_factory):
    from hdmap.features.cache import FeatureCache
    return FeatureCache(tmp_path_factory.getbasetemp() / "feature_cache", progress=False)


# A search space of the tiny random ViT for end-to-end searches (one bad shots value makes trials fail).
TINY_SPACE = """
model_name: hdmap_patchcore
metric: accuracy
fixed:
  backbone: {name: dinov2_vits14, weights: none, taps: [0, 1], model_kwargs: {depth: 2, embed_dim: 24, num_heads: 2}}
  image_size: 112
params:
  model.shots: {choice: [4, 500]}
  model.bank_mode: {choice: [mixed, gated]}
  model.coreset_ratio: {uniform: [0.2, 0.5]}
"""


class Payload:
    """A pickled object whose loading would run code (it writes a marker file): what a crafted file carries."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))

