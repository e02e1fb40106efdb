"""One fit spread over a Ray cluster (`hdmap fit-eval --address`): feature extraction and the coreset's windows run
as Ray tasks on every node, the bank is the bank of a 1-node cluster and of no cluster at all, and a worker that
dies during the window stage is retried without changing the bank. Local clusters of separate Ray nodes (slow)."""
import copy
import os
import sys

import pytest
import torch

from hdmap.features.cache import FeatureCache
from hdmap.kinds.registry import fit_and_score
from hdmap.spread import spreading

pytestmark = pytest.mark.slow


def _config(tiny_config) -> dict:
    config = copy.deepcopy(tiny_config)
    config["model"].update(shots=None, bank_size=24, fit_window_mb=0.05, fusion="none")  # many windows
    return config


def _fit(config, domain, cache_dir, address=None, window_fn=None):
    with spreading(address) as spread:
        if window_fn is not None:
            spread.wraps["coreset windows"] = window_fn
        module, outputs, _ = fit_and_score(config, domain, FeatureCache(cache_dir, progress=False))
        summary = spread.summary() if spread is not None else None
    return module.core.banks["mixed"], outputs["scores"], summary


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    made = []

    def start(nodes: int):
        made.append(Cluster(initialize_head=True, head_node_args={"num_cpus": 1}))
        for _ in range(nodes - 1):
            made[-1].add_node(num_cpus=1)
        made[-1].wait_for_nodes()
        return made[-1].address

    yield start
    for each in made:
        each.shutdown()


def dies_once(marker: str, task):
    """The window task, except that its first call anywhere kills its worker process (os._exit: no cleanup)."""
    def run(*args):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return task(*args)
    return run


def test_a_fit_spread_over_two_nodes_uses_both_and_builds_the_one_node_bank(tiny_config, domain_c, tmp_path,
                                                                            cluster):
    config = _config(tiny_config)
    local_bank, local_scores, _ = _fit(config, domain_c, tmp_path / "local")
    one_bank, one_scores, one = _fit(config, domain_c, tmp_path / "one", cluster(1))
    two_bank, two_scores, two = _fit(config, domain_c, tmp_path / "two", cluster(2))
    assert len(two["features"]) == 2, two  # both nodes extracted features
    assert sum(two["coreset windows"].values()) == sum(one["coreset windows"].values()) > 4  # windowed banks
    for bank, scores in ((one_bank, one_scores), (two_bank, two_scores)):
        assert torch.equal(bank.features, local_bank.features) and torch.equal(scores, local_scores)


def test_a_worker_killed_during_the_window_stage_is_retried_and_the_bank_is_the_same(tiny_config, domain_c, tmp_path,
                                                                                     cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    config = _config(tiny_config)
    bank, scores, _ = _fit(config, domain_c, tmp_path / "calm")
    marker = tmp_path / "died"
    again, again_scores, summary = _fit(config, domain_c, tmp_path / "dying", cluster(2),
                                        window_fn=lambda task: dies_once(str(marker), task))
    assert marker.exists()  # a worker did die in the window stage
    assert torch.equal(again.features, bank.features) and torch.equal(again_scores, scores)
