import numpy as np
import pytest
import torch

from hdmap.models.coreset import greedy_coreset
from hdmap.models.memory_bank import EmptyBankError, MemoryBank, knn


def test_coreset_size_and_determinism():
    x = torch.randn(500, 32)
    a = greedy_coreset(x, 0.1, seed=1)
    assert len(a) == 50 and len(set(a.tolist())) == 50
    assert torch.equal(a, greedy_coreset(x, 0.1, seed=1))
    assert not torch.equal(a, greedy_coreset(x, 0.1, seed=2))
    assert len(MemoryBank().fit(x, coreset_ratio=0.25)) == 125


def test_coreset_covers_clusters():
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    x = torch.cat([c + torch.randn(100, 2) for c in centres])
    chosen = x[greedy_coreset(x, 3 / 300, seed=0, projection_dim=None)]
    nearest_centre = torch.cdist(chosen, centres).argmin(1)
    assert sorted(nearest_centre.tolist()) == [0, 1, 2]


def test_faiss_agrees_with_brute_force():
    bank, queries = torch.randn(300, 16), torch.randn(40, 16)
    distances, indices = knn(bank, queries, 3)
    brute = torch.cdist(queries, bank)
    expected, expected_idx = brute.topk(3, largest=False)
    assert torch.allclose(distances, expected, atol=1e-4)
    assert torch.equal(indices, expected_idx)


def test_torch_backend_agrees_with_faiss_and_index_is_reused():
    from hdmap.models.memory_bank import KnnIndex

    bank, queries = torch.randn(300, 16), torch.randn(40, 16)
    faiss_d, faiss_i = KnnIndex(bank, "faiss-cpu").search(queries, 3)
    torch_d, torch_i = KnnIndex(bank, "torch").search(queries, 3)
    assert torch.allclose(faiss_d, torch_d, atol=1e-4) and torch.equal(faiss_i, torch_i)
    memory = MemoryBank().fit(bank, coreset_ratio=1.0)
    assert memory.index() is memory.index()  # built once, not per query
    memory.fit(bank[:100], coreset_ratio=1.0)
    assert len(memory.index()) == 100  # a new fit rebuilds it


def test_faiss_is_installed_by_the_readme_install():
    import faiss  # README: pip install -e ".[cpu,dev]"; the `cpu` extra brings faiss-cpu

    index = faiss.IndexFlatL2(4)
    index.add(np.eye(4, dtype=np.float32))
    assert index.ntotal == 4


def test_reweighting_hand_case():
    bank = MemoryBank().fit(torch.tensor([[0.0], [1.0], [3.0]]), coreset_ratio=1.0)
    patches = torch.tensor([[0.2], [0.5]])  # one image of two patches; worst patch 0.5, nearest member 0 or 1
    plain, _ = bank.image_scores(patches, 1, reweight_k=1)
    assert plain.item() == pytest.approx(0.5)
    weighted, _ = bank.image_scores(patches, 1, reweight_k=2)
    # m* = member at 0.0 (tie broken by faiss towards index 0) or 1.0; both are 0.5 away: w = 1 - e^.5/(e^.5+e^.5)
    assert weighted.item() == pytest.approx(0.5 * 0.5, abs=1e-5)
    top, patch_scores = bank.image_scores(patches, 1, image_score="top", top_fraction=1.0)
    assert top.item() == pytest.approx(0.35) and patch_scores.shape == (1, 2)


def test_reweighting_isolated_neighbour_lowers_less():
    bank = MemoryBank().fit(torch.tensor([[0.0], [10.0], [11.0]]), coreset_ratio=1.0)
    weighted, _ = bank.image_scores(torch.tensor([[2.0]]), 1, reweight_k=2)
    expected = 2.0 * (1 - np.exp(2.0) / (np.exp(2.0) + np.exp(8.0)))
    assert weighted.item() == pytest.approx(expected, rel=1e-5)


def test_empty_bank_refuses():
    with pytest.raises(EmptyBankError, match="empty"):
        MemoryBank(4).patch_distances(torch.randn(2, 4))


def test_state_dict_restores_bank():
    bank = MemoryBank().fit(torch.randn(50, 8), coreset_ratio=0.2)
    fresh = MemoryBank()
    fresh.load_state_dict(bank.state_dict())
    assert torch.equal(fresh.features, bank.features)


def test_tags_follow_coreset_members():
    patches = torch.cat([torch.zeros(10, 2), torch.full((10, 2), 50.0)]) + torch.randn(20, 2) * 0.01
    tags = torch.tensor([0] * 10 + [1] * 10)
    bank = MemoryBank().fit(patches, coreset_ratio=0.5, tags=tags)
    assert torch.equal(bank.member_tags, (bank.features[:, 0] > 25).long())


def test_greedy_order_is_resumable_and_the_store_serves_every_ratio(tmp_path):
    from hdmap.models.coreset_store import CoresetStore
    from hdmap.models.coreset import GreedyOrder, greedy_coreset

    features = torch.randn(600, 48, generator=torch.Generator().manual_seed(0))
    direct = {ratio: greedy_coreset(features, ratio, seed=3) for ratio in (0.05, 0.2)}
    order = GreedyOrder(features, seed=3)
    assert torch.equal(order.extend(30), direct[0.05]) and torch.equal(order.extend(120), direct[0.2])
    store = CoresetStore(tmp_path / "coresets")
    assert torch.equal(greedy_coreset(features, 0.05, 3, store=store), direct[0.05])
    assert torch.equal(greedy_coreset(features, 0.2, 3, store=store), direct[0.2])  # extends the stored order
    assert torch.equal(CoresetStore(tmp_path / "coresets").coreset(features, 30, 3, 128), direct[0.05])
    assert (store.misses, store.hits) == (2, 0)
    assert torch.equal(greedy_coreset(features, 0.1, 3, store=store), greedy_coreset(features, 0.1, 3))
    assert store.hits == 1
    other = greedy_coreset(features + 1e-3, 0.1, 3, store=store)  # other features: another key, no stale hit
    assert store.misses == 3 and torch.equal(other, greedy_coreset(features + 1e-3, 0.1, 3))


def test_greedy_order_keeps_the_features_device():
    from hdmap.models.coreset import GreedyOrder

    features = torch.randn(50, 8)
    assert GreedyOrder(features).extend(5).device == features.device
    if torch.cuda.is_available():
        assert GreedyOrder(features.cuda()).extend(5).device.type == "cuda"


class _FakeGpuFaiss:
    """Stands in for GPU faiss on a CPU machine: records what the GPU path hands it."""

    def __init__(self):
        self.resources, self.searched = [], []
        fake = self

        class Resources:
            def __init__(self):
                fake.resources.append(self)
                self.temp_memory = None

            def setTempMemory(self, size):
                self.temp_memory = size

        class Config:
            device = None

        class GpuIndexFlatL2:
            def __init__(self, resources, dim, config):
                self.resources, self.dim, self.config, self.vectors = resources, dim, config, None

            def add(self, vectors):
                assert isinstance(vectors, torch.Tensor)  # no numpy: the GPU tensor goes in as it is
                self.vectors = vectors

            def search(self, queries, k):
                assert isinstance(queries, torch.Tensor) and queries.device == self.vectors.device
                fake.searched.append(queries.device)
                squared, indices = (torch.cdist(queries, self.vectors) ** 2).topk(k, dim=1, largest=False)
                return squared, indices

        self.StandardGpuResources, self.GpuIndexFlatConfig, self.GpuIndexFlatL2 = Resources, Config, GpuIndexFlatL2


def test_gpu_faiss_path_takes_torch_tensors_and_shares_one_resource_object(monkeypatch):
    from hdmap.models import memory_bank

    fake = _FakeGpuFaiss()
    monkeypatch.setattr(memory_bank, "faiss", fake)
    monkeypatch.setattr(memory_bank, "_GPU_RESOURCES", {})
    bank, queries = torch.randn(200, 8), torch.randn(30, 8)
    first = memory_bank.KnnIndex(bank, "faiss-gpu")
    second = memory_bank.KnnIndex(bank[:50], "faiss-gpu")
    distances, indices = first.search(queries, 2)
    second.search(queries, 1)
    assert len(fake.resources) == 1 and fake.resources[0].temp_memory == memory_bank.GPU_TEMP_MEMORY
    assert distances.device == indices.device == bank.device and len(fake.searched) == 2
    expected = memory_bank.KnnIndex(bank, "torch").search(queries, 2)
    assert torch.equal(indices, expected[1]) and torch.allclose(distances, expected[0], atol=1e-4)


@pytest.mark.parametrize("backend", ["faiss-cpu", "torch"])
def test_a_querys_distance_does_not_depend_on_the_queries_searched_with_it(backend):
    """The found members' distances are recomputed from the vectors' difference: a map's score is the same alone
    or in any batch (the search's |q|^2 + |m|^2 - 2 q.m rounds by BLAS blocking: off by ~1e-3 on patch features)."""
    if backend == "faiss-cpu":
        pytest.importorskip("faiss")
    from hdmap.models.memory_bank import KnnIndex

    bank, queries = torch.randn(500, 64) * 5 + 40, torch.randn(400, 64) * 5 + 40  # far from 0: cancellation
    index = KnnIndex(bank, backend)
    distances, nearest = index.search(queries, 3)
    alone = torch.cat([index.search(queries[i:i + 1], 3)[0] for i in range(7)])
    assert torch.equal(distances[:7], alone)
    exact = np.linalg.norm(bank.double().numpy()[nearest.numpy()] - queries.double().numpy()[:, None, :], axis=2)
    np.testing.assert_allclose(distances.numpy(), exact, rtol=1e-6)


def test_index_is_kept_per_device_until_the_members_change(monkeypatch):
    """One index per device and contents: repeated scoring reuses it; a fit or a load builds a new one."""
    from hdmap.models import memory_bank

    built = []
    original = memory_bank.KnnIndex.__init__
    monkeypatch.setattr(memory_bank.KnnIndex, "__init__", lambda self, *a, **k: built.append(1) or original(
        self, *a, **k))
    memory = MemoryBank().fit(torch.randn(100, 4), coreset_ratio=1.0)
    for _ in range(3):
        memory.image_scores(torch.randn(20, 4), 2)
    assert len(built) == 1
    other = MemoryBank()
    other.load_state_dict(MemoryBank().fit(torch.randn(60, 4), coreset_ratio=1.0).state_dict())
    memory.load_state_dict(other.state_dict())
    assert len(memory.index()) == 60 and len(built) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_index_survives_a_move_to_the_cpu_and_back():
    memory = MemoryBank().fit(torch.randn(100, 4), coreset_ratio=1.0).cuda()
    gpu_index = memory.index()
    assert gpu_index.device.type == "cuda"
    memory.cpu()
    assert memory.index().device.type == "cpu"
    memory.cuda()
    assert memory.index() is gpu_index  # Lightning's teardown moved it away; the GPU index was kept


def test_cpu_threads_bound_torch_and_faiss_alike():
    import faiss

    from hdmap.models.memory_bank import set_cpu_threads

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        set_cpu_threads(1)
        assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])
