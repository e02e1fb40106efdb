"""Which kNN runs on which GPU, decided before any faiss GPU call: a faked CUDA device of compute capability 9.0
(Hopper) with a faiss GPU wheel built for 7.0-8.9 gets torch kNN, and faiss's GPU entry points are never called."""
import types

import pytest
import torch

from hdmap.models import knn_choice as choice
from hdmap.models.memory_bank import KnnIndex


class FaissSpy(types.SimpleNamespace):
    """A stand-in faiss GPU build that records every GPU entry point called."""

    def __init__(self, gpus: int = 1):
        calls = []
        super().__init__(calls=calls)

        def recorder(name, result=None):
            def call(*args, **kwargs):
                calls.append(name)
                return result
            return call

        self.StandardGpuResources = recorder("StandardGpuResources")
        self.GpuIndexFlatL2 = recorder("GpuIndexFlatL2")
        self.GpuIndexFlatConfig = recorder("GpuIndexFlatConfig")
        self.get_num_gpus = recorder("get_num_gpus", gpus)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device of a chosen compute capability and a faiss GPU wheel whose metadata states 7.0-8.9."""
    spy = FaissSpy()
    monkeypatch.setattr(choice, "faiss", spy)
    monkeypatch.setattr(choice, "faiss_gpu_capability_range", lambda: ("faiss-gpu-cu12", (7, 0), (8, 9)))

    def with_capability(major: int, minor: int):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        return spy
    return with_capability


def test_hopper_gets_torch_knn_and_faiss_gpu_is_never_called(fake_gpu):
    spy = fake_gpu(9, 0)
    picked = choice.knn_choice("cuda:0")
    assert picked.backend == "torch"
    assert "7.0-8.9" in picked.reason and "9.0" in picked.reason and "faiss-gpu-cu12" in picked.reason
    assert spy.calls == []  # not even get_num_gpus: nothing of the GPU build runs on a device it does not serve
    bank, queries = torch.randn(50, 8), torch.randn(7, 8)
    index = KnnIndex(bank, backend=picked.backend)  # the torch path the CUDA bank then takes (here on CPU tensors)
    distances, indices = index.search(queries, 3)
    expected = torch.cdist(queries, bank).topk(3, largest=False)
    assert torch.equal(indices, expected.indices) and torch.allclose(distances, expected.values)
    assert spy.calls == []


def test_a_gpu_inside_the_wheels_range_gets_faiss_gpu(fake_gpu):
    spy = fake_gpu(8, 6)
    picked = choice.knn_choice("cuda:0")
    assert picked.backend == "faiss-gpu" and "8.6" in picked.reason
    assert spy.calls == ["get_num_gpus"]


def test_a_faiss_gpu_build_without_a_stated_range_is_trusted_only_when_the_user_says_so(fake_gpu, monkeypatch):
    fake_gpu(9, 0)
    monkeypatch.setattr(choice, "faiss_gpu_capability_range", lambda: None)
    monkeypatch.delenv(choice.TRUST_FAISS_GPU, raising=False)
    refused = choice.knn_choice("cuda:0")
    assert refused.backend == "torch" and choice.TRUST_FAISS_GPU in refused.reason
    monkeypatch.setenv(choice.TRUST_FAISS_GPU, "1")
    assert choice.knn_choice("cuda:0").backend == "faiss-gpu"


def test_no_faiss_gpu_build_means_torch_on_cuda(monkeypatch):
    monkeypatch.setattr(choice, "faiss", types.SimpleNamespace())  # a CPU-only faiss
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: pytest.fail("not needed"))
    assert choice.knn_choice("cuda:1").backend == "torch"


def test_the_capability_range_is_read_from_the_wheels_metadata(monkeypatch):
    """The sentence the faiss-gpu-cu12 1.14.1.post1 description carries (with its en dash)."""
    description = "* Supports Volta to Ada Lovelace architecture GPUs (Compute Capability 7.0\u20138.9)\n"

    class Meta(dict):
        def get_payload(self):
            return description

    def fake_metadata(name):
        if name != "faiss-gpu-cu12":
            raise choice.metadata.PackageNotFoundError(name)
        return Meta(Summary="A library for efficient similarity search")

    monkeypatch.setattr(choice.metadata, "metadata", fake_metadata)
    choice.faiss_gpu_capability_range.cache_clear()
    try:
        assert choice.faiss_gpu_capability_range() == ("faiss-gpu-cu12", (7, 0), (8, 9))
    finally:
        choice.faiss_gpu_capability_range.cache_clear()


def test_cpu_banks_use_faiss_cpu_where_installed():
    picked = choice.knn_choice("cpu")
    assert picked.backend == ("faiss-cpu" if choice.faiss is not None else "torch") and picked.reason
