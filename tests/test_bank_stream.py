"""A bank built from patches as they arrive: the same bank where it fits in its window, a bounded window where it
does not (composable greedy per window, greedy over the union of the picks)."""
import pytest
import torch

from hdmap.models.bank_stream import BankStream
from hdmap.models.memory_bank import KnnIndex, MemoryBank

FIT = {"coreset_ratio": 0.1, "seed": 5, "projection_dim": 16, "store": None, "bank_size": 60, "method": "composable"}


def _patches(n: int = 3000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(30, 24, generator=generator) * 6
    return centres[torch.randint(30, (n,), generator=generator)] + torch.randn(n, 24, generator=generator)


def _bank(x, window, batches, fit=FIT, tagged=True) -> MemoryBank:
    tags = torch.arange(len(x)) % 2
    stream = BankStream(len(x), x[:0], fit, window, tagged=tagged)
    start = 0
    for size in batches:
        stream.add(x[start:start + size], tags[start:start + size])
        start += size
    stream.add(x[start:], tags[start:])
    bank = MemoryBank()
    stream.finish(bank)
    return bank, stream


def test_a_bank_that_fits_its_window_is_the_bank_memory_bank_fit_builds():
    x = _patches()
    whole = MemoryBank().fit(x, tags=torch.arange(len(x)) % 2, **FIT)
    streamed, stream = _bank(x, window=len(x), batches=[7, 500, 1])
    assert not stream.windowed
    assert torch.equal(streamed.features, whole.features) and torch.equal(streamed.member_tags, whole.member_tags)


def test_a_larger_bank_holds_one_window_and_covers_like_the_whole_fit():
    x = _patches()
    whole = MemoryBank().fit(x, **FIT)
    streamed, stream = _bank(x, window=700, batches=[333] * 5)
    assert stream.windowed and stream.windows == 5 and len(streamed) == FIT["bank_size"]
    assert len(torch.unique(streamed.features, dim=0)) == FIT["bank_size"]  # no patch twice
    coverage = {name: float(KnnIndex(bank.features).search(x, 1)[0].max()) for name, bank in
                (("whole", whole), ("streamed", streamed))}
    random = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:FIT["bank_size"]]]
    assert coverage["streamed"] < 1.25 * coverage["whole"] < 1.25 * float(KnnIndex(random).search(x, 1)[0].max())
    members = {tuple(row.tolist()) for row in x}
    assert all(tuple(row.tolist()) in members for row in streamed.features)  # members are patches of x


def test_a_windowed_bank_does_not_depend_on_how_the_patches_were_batched_and_follows_its_seed():
    x = _patches()
    first, _ = _bank(x, window=700, batches=[333] * 5)
    again, _ = _bank(x, window=700, batches=[1, 699, 700, 50])
    assert torch.equal(first.features, again.features) and torch.equal(first.member_tags, again.member_tags)
    other, _ = _bank(x, window=700, batches=[333] * 5, fit={**FIT, "seed": 6})
    assert not torch.equal(first.features, other.features)
    narrower, _ = _bank(x, window=1000, batches=[333] * 5)
    assert not torch.equal(first.features, narrower.features)  # the window is part of the result: a setting


def test_tags_follow_the_members_and_an_untagged_bank_has_none():
    x = _patches()
    tagged, _ = _bank(x, window=700, batches=[])
    rows = {tuple(row.tolist()): i for i, row in enumerate(x)}
    assert [int(i) % 2 for i in (rows[tuple(r.tolist())] for r in tagged.features)] == tagged.member_tags.tolist()
    untagged, _ = _bank(x, window=700, batches=[], tagged=False)
    assert set(untagged.member_tags.tolist()) == {-1}


def test_exact_greedy_and_small_banks_are_held_whole():
    x = _patches(1000)
    assert not BankStream(1000, x[:0], {**FIT, "method": "greedy"}, 100).windowed  # exact greedy needs all
    assert not BankStream(1000, x[:0], {**FIT, "bank_size": 300}, 100).windowed  # 4 x 300 >= 1000: no chunk stage
    assert BankStream(1000, x[:0], FIT, 100).buffer.shape == (100, 24)


def test_a_stream_given_more_or_fewer_patches_than_planned_is_an_error():
    x = _patches(100)
    stream = BankStream(50, x[:0], FIT, 1000)
    with pytest.raises(RuntimeError, match="planned for 50 patches received"):
        stream.add(x, torch.zeros(100, dtype=torch.long))
    short = BankStream(150, x[:0], FIT, 1000)
    short.add(x, torch.zeros(100, dtype=torch.long))
    with pytest.raises(RuntimeError, match="planned for 150 patches received 100"):
        short.finish(MemoryBank())
