import pytest
import torch
from torch.overrides import TorchFunctionMode

from hdmap.models import coreset
from hdmap.models.coreset import GreedyOrder, composable_greedy, coreset_size, greedy_coreset
from hdmap.models.memory_bank import KnnIndex, MemoryBank


def _clusters(n_per: int = 400, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, 16, generator=generator) * 20
    spread = torch.rand(12, 1, generator=generator) * 3 + 0.5  # clusters of different widths
    return torch.cat([c + s * torch.randn(n_per, 16, generator=generator) for c, s in zip(centres, spread)])


def _coverage(x: torch.Tensor, members: torch.Tensor) -> float:
    return float(KnnIndex(x[members]).search(x, 1)[0].max())


def test_bank_size_is_counted_in_patches_and_overrides_the_ratio():
    assert coreset_size(1000, 0.1) == 100 and coreset_size(1000, 0.1, bank_size=37) == 37
    assert coreset_size(20, 0.1, bank_size=37) == 20  # never more than there are
    with pytest.raises(ValueError, match="bank_size"):
        coreset_size(100, 0.1, bank_size=0)
    x = torch.randn(500, 8)
    assert len(MemoryBank().fit(x, bank_size=37, method="composable")) == 37
    assert len(MemoryBank().fit(x, coreset_ratio=0.5, bank_size=37)) == 37


def test_composable_greedy_is_seeded_unique_and_covers_like_exact_greedy(monkeypatch):
    monkeypatch.setattr(coreset, "CHUNK_PATCHES", 512)
    x = _clusters()
    size = 100
    exact = greedy_coreset(x, 1.0, bank_size=size, method="greedy", projection_dim=None)
    composable = composable_greedy(x, size, seed=0, projection_dim=None, chunk=512)
    assert len(set(composable.tolist())) == size
    assert torch.equal(composable, composable_greedy(x, size, seed=0, projection_dim=None, chunk=512))
    assert not torch.equal(composable, composable_greedy(x, size, seed=1, projection_dim=None, chunk=512))
    random = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:size]
    assert _coverage(x, composable) <= 1.15 * _coverage(x, exact)  # 1.05 on seeds 0-2
    assert _coverage(x, composable) < 0.9 * _coverage(x, random)  # 0.79  # k-center, not a random sample


def test_composable_greedy_never_reads_all_patches_in_a_pick(monkeypatch):
    sizes = []
    original = GreedyOrder.__init__

    def recording(self, features, *args, **kwargs):
        sizes.append(len(features))
        original(self, features, *args, **kwargs)

    monkeypatch.setattr(GreedyOrder, "__init__", recording)
    x = torch.randn(6000, 8)
    chosen = greedy_coreset(x, 1.0, bank_size=50, method="composable")
    assert len(chosen) == 50
    # chunks of at most CHUNK_PATCHES, then the union of their picks (about 4 x 50): never all 6000 at once
    assert max(sizes) <= coreset.CHUNK_PATCHES and sizes[-1] <= coreset.UNION_FACTOR * 50 + len(sizes)
    sizes.clear()
    greedy_coreset(x, 1.0, bank_size=50, method="greedy")
    assert sizes == [6000]  # exact greedy reads every patch each pick


def test_composable_greedy_on_few_patches_is_exact_greedy():
    x = torch.randn(300, 8)  # 4 x 100 >= 300: no chunking pays off
    assert torch.equal(greedy_coreset(x, 1.0, bank_size=100, method="composable"),
                       greedy_coreset(x, 1.0, bank_size=100, method="greedy"))


def test_the_store_caches_both_stages_and_a_hit_runs_no_chunk_stage(tmp_path, monkeypatch):
    from hdmap.models import coreset
    from hdmap.models.coreset_store import CoresetStore

    x = torch.randn(5000, 8, generator=torch.Generator().manual_seed(2))
    store = CoresetStore(tmp_path)
    first = greedy_coreset(x, 1.0, bank_size=40, method="composable", store=store)
    picks = []
    original = coreset.GreedyOrder.extend
    monkeypatch.setattr(coreset.GreedyOrder, "extend", lambda self, size, progress=None: picks.append(size) or
                        original(self, size, progress))
    again = greedy_coreset(x, 1.0, bank_size=40, method="composable", store=store)
    assert torch.equal(first, again) and torch.equal(first, greedy_coreset(x, 1.0, bank_size=40, method="composable"))
    assert picks[0] == 40  # the hit: only the union's stored order, no chunk's greedy run
    assert (store.misses, store.hits) == (2, 2)  # chunk picks and union order: computed once, read once


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match="coreset method.*'kmeans'"):
        greedy_coreset(torch.randn(10, 2), 0.5, method="kmeans")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_composable_greedy_on_the_gpu_matches_the_cpu_choice_in_size_and_device():
    x = torch.randn(20000, 16)
    chosen = greedy_coreset(x.cuda(), 1.0, bank_size=100, method="composable")
    assert chosen.device.type == "cuda" and len(set(chosen.tolist())) == 100


def test_the_settings_refuse_a_bad_method_or_bank_size_by_name():
    from hdmap.kinds.patchcore.settings import PatchCoreSettings

    with pytest.raises(ValueError, match="'coreset_method' expects one of greedy, composable, got 'kmeans'"):
        PatchCoreSettings(coreset_method="kmeans")
    with pytest.raises(ValueError, match=r"'bank_size' expects \[1, inf\)"):
        PatchCoreSettings(bank_size=0)


class HostSyncs(TorchFunctionMode):
    """Counts the tensor calls that, on a GPU, make the host wait for the device (a value read back, a shape that
    depends on values, a copy to the host); on the CPU the same calls are the equivalent to count."""

    SYNCING = {"item", "tolist", "numpy", "__int__", "__bool__", "__float__", "__index__", "cpu", "nonzero",
               "unique", "masked_select", "argwhere"}

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in self.SYNCING:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            self.calls.append((name, first.numel() if first is not None else 0))
        return func(*args, **(kwargs or {}))


def test_the_pick_loops_never_read_a_value_back_to_the_host():
    features = torch.randn(3000, 32)
    order = GreedyOrder(features, seed=0, projection_dim=16)
    with HostSyncs() as syncs:
        picks = order.extend(300)
    assert syncs.calls == [] and len(picks) == 300
    with HostSyncs() as syncs:
        chosen = composable_greedy(torch.randn(6000, 32), 100, chunk=1000)
    assert syncs.calls == [] and len(chosen) == 100


def test_the_store_key_reads_two_numbers_back_not_the_bank():
    from hdmap.models.coreset_store import features_digest

    features = torch.randn(5000, 48)
    with HostSyncs() as syncs:
        key = features_digest(features, 0, 64)
    assert syncs.calls == [("tolist", 2)]  # the two 64-bit sums; the bank itself never leaves its device
    nudged = features.clone()
    nudged[4321, 17] = torch.nextafter(nudged[4321, 17], torch.tensor(float("inf")))  # one ulp
    swapped = features.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    keys = {key, features_digest(nudged, 0, 64), features_digest(swapped, 0, 64), features_digest(features, 1, 64),
            features_digest(features[:4999], 0, 64)}
    assert len(keys) == 5 and features_digest(features.clone(), 0, 64) == key


@pytest.mark.parametrize("method", ["greedy", "composable"])
def test_identical_patches_never_give_a_member_twice(method):
    """Once every remaining distance is 0 (all patches alike), the picks are still distinct patches."""
    features = torch.ones(3000, 8)
    chosen = greedy_coreset(features, 1.0, bank_size=200, method=method)
    assert len(chosen) == 200 and len(set(chosen.tolist())) == 200


def _chunked(n: int = 5000, chunk: int = 700, union: int = 1500, seed: int = 3):
    from hdmap.models.coreset import chunks_of, project

    x = project(torch.randn(n, 48, generator=torch.Generator().manual_seed(seed)), seed, 32)
    parts = chunks_of(n, seed, "cpu", chunk)  # 8 chunks of 625: shares differ where n does not split evenly
    shares = [max(1, -(-union * len(part) // n)) for part in parts]
    return x, parts, shares


def test_chunks_in_step_pick_exactly_what_chunk_by_chunk_picks():
    from hdmap.models.chunk_greedy import chunk_picks

    for n, union in ((1400, 1399), (4999, 1213), (5000, 1500)):  # uneven chunks and shares; shares up to the chunk
        x, parts, shares = _chunked(n, union=union)
        by_chunk = chunk_picks(x, parts, shares, seed=3, in_step=False)
        in_step = chunk_picks(x, parts, shares, seed=3, in_step=True)
        assert torch.equal(by_chunk, in_step)
        assert len(set(in_step.tolist())) == sum(shares)  # no patch picked twice, none of the padding
    assert not torch.equal(chunk_picks(x, parts, shares, seed=4, in_step=True), in_step)  # the seed is used


def test_chunks_in_step_dispatch_fewer_operations_per_pick():
    from torch.utils._python_dispatch import TorchDispatchMode

    from hdmap.models.chunk_greedy import chunk_picks

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += not func.is_view  # a view launches no kernel on a GPU
            return func(*args, **(kwargs or {}))

    x, parts, shares = _chunked()
    per_pick = {}
    for in_step in (False, True):
        Count.calls = 0
        with Count():
            chunk_picks(x, parts, shares, seed=3, in_step=in_step)
        per_pick[in_step] = Count.calls / sum(shares)
    assert per_pick[True] < 0.5 * per_pick[False], per_pick  # 8 chunks: 2.05 against 9.0


def test_composable_greedy_runs_chunks_in_step_off_the_cpu_only(monkeypatch):
    from hdmap.models import chunk_greedy

    seen = []
    original = chunk_greedy.StepGreedy.__init__
    monkeypatch.setattr(chunk_greedy.StepGreedy, "__init__",
                        lambda self, *args: seen.append(True) or original(self, *args))
    composable_greedy(_clusters(), 100, seed=0, projection_dim=None, chunk=512)
    assert not seen  # a CPU keeps one chunk in its cache for all its picks
