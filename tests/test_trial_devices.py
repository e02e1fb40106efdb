"""A trial sees exactly its GPUs: none hides them all; `auto` shares out the cluster's GPUs, not the driver's view."""
import os

import pytest
import torch

from hdmap.run.trainer import ACCELERATOR_ENV, make_trainer
from hdmap.tune.runner import SearchOptions, gpus_per_trial
from hdmap.tune.trial_devices import confine, gpu_memory_message, peak_memory


def test_a_trial_given_no_gpu_hides_every_gpu_and_its_trainers_use_the_cpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what Ray 2.60 leaves a 0-GPU task on a 4-GPU node
    where = confine([], 0.0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and where["visible_devices"] == ""
    assert os.environ[ACCELERATOR_ENV] == "cpu" and where["device"] == "cpu" and where["gpu_ids"] == ""
    assert make_trainer("auto").strategy.root_device.type == "cpu"  # `auto` inside the trial means its own CPU
    assert peak_memory(where)["device"] == "cpu" and peak_memory(where)["peak_rss_bytes"] > 0


def test_a_gpu_the_trials_torch_cannot_use_is_its_error_naming_the_driver(monkeypatch):
    """An old driver (or a CPU build of torch) never turns a GPU trial into a silent CPU run."""
    from hdmap.tune import gpu_check
    from hdmap.tune.trial_devices import TrialGpuUnusableError

    monkeypatch.delenv(gpu_check.ALLOW_CPU_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(gpu_check, "installed_driver", lambda: "550.54.15")
    with pytest.raises(TrialGpuUnusableError, match="GPU 1: torch cannot use .* driver 550.54.15 found.*CUDA 13.0, "
                                                    "which needs driver >= 580"):
        confine(["1"], 0.5)


def test_a_cpu_run_of_a_gpu_trial_is_only_by_request_and_noted(monkeypatch):
    from hdmap.tune import gpu_check

    monkeypatch.setenv(gpu_check.ALLOW_CPU_ENV, "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    where = confine(["1"], 0.5)
    assert where["device"] == "cpu" and "GPU 1 but torch sees no CUDA" in where["placement_note"]
    assert gpu_check.ALLOW_CPU_ENV in where["placement_note"] and os.environ[ACCELERATOR_ENV] == "cpu"


def test_a_trial_with_a_gpu_share_caps_its_torch_memory_to_it(monkeypatch):
    capped = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda share, device: capped.append(share))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 80 << 30}))
    where = confine(["0"], 0.25)
    assert capped == [pytest.approx(0.25 - 0.75 / 80)]  # the share less the CUDA context: four trials fit together
    assert where["device"] == "cuda" and where["gpu_name"] == "NVIDIA H200"
    assert os.environ[ACCELERATOR_ENV] == "gpu"
    assert "0.25 share" in gpu_memory_message(RuntimeError("CUDA out of memory"), where)


@pytest.mark.parametrize("gpus, concurrent, share", [(2, 4, 0.5), (2, 3, 0.5), (2, 2, 1.0), (8, 2, 1.0),
                                                      (1, 4, 0.25), (0, 4, 0.0)])
def test_auto_shares_out_the_clusters_gpus_in_shares_that_pack(gpus, concurrent, share):
    assert gpus_per_trial(SearchOptions(max_concurrent=concurrent), cluster_gpus=gpus) == share


def test_auto_reads_the_clusters_gpus_not_the_drivers_cuda(monkeypatch):
    """A CPU-only head (no CUDA here) driving a cluster with 2 GPUs: trials still get GPU shares."""
    from hdmap.tune import runner

    monkeypatch.setattr(runner, "ray_gpus", lambda: 2.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: pytest.fail("auto must not ask the driver's CUDA"))
    assert gpus_per_trial(SearchOptions(max_concurrent=4)) == 0.5
    assert gpus_per_trial(SearchOptions(max_concurrent=4, gpus_per_trial=0)) == 0.0
