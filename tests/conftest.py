import numpy as np
import pytest
import tifffile

from hdmap.data.synth import SynthConfig, write_dataset


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
