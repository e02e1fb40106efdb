"""Everything a run needs about one domain: items, raw maps, labels, conditions, and the saved split."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from hdmap.data.hdmap import MapItem, condition_record, discover_domain, read_map
from hdmap.data.splits import TestSplit, split_tune_holdout


@dataclass
class DomainData:
    root: str
    domain: str
    train: list[MapItem]
    test: list[MapItem]
    train_maps: np.ndarray  # (N, H, W) float32
    test_maps: np.ndarray
    split: TestSplit

    @property
    def test_labels(self) -> np.ndarray:
        return np.array([i.label for i in self.test])

    @property
    def test_conditions(self) -> list[str]:
        return [i.condition for i in self.test]

    @property
    def train_truth(self) -> list[str]:
        return [i.condition for i in self.train]

    def condition_record(self) -> dict[str, str]:
        """{path tail: condition} of train and test as used by this run (saved in checkpoints)."""
        return condition_record(self.train + self.test)

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """Hashes of train and test file names + contents (read once per DomainData, not per checkpoint)."""
        return {"train": content_fingerprint(self.train), "test": content_fingerprint(self.test)}


def content_fingerprint(items: list[MapItem]) -> str:
    """Hash of the file names and contents (not their location: a moved data root still matches)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(Path(item.path).name.encode())
        digest.update(Path(item.path).read_bytes())
    return digest.hexdigest()[:16]


def _stack(items: list[MapItem]) -> np.ndarray:
    maps = [read_map(i.path) for i in items]
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:
        odd = next(i.path for i, m in zip(items, maps) if m.shape != maps[0].shape)
        raise ValueError(f"{odd}: map shape differs from the others of its domain ({sorted(shapes)})")
    return np.stack(maps)


def load_domain(root: str, domain: str, split_path: str | Path | None = None, tune_fraction: float = 0.3,
                split_seed: int = 0, condition_csv: str | None = None, split: TestSplit | None = None,
                condition_overrides: dict[str, str] | None = None) -> DomainData:
    """Read a domain. The split is `split` if given, else the one at `split_path` if it exists, else a new one
    (saved to `split_path`); a split that does not match the test files is refused."""
    items = discover_domain(root, domain, condition_csv, condition_overrides)
    paths = [i.path for i in items["test"]]
    if split is None and split_path and Path(split_path).exists():
        split = TestSplit.load(split_path)
    if split is not None:
        split.check_matches(paths)
    else:
        split = split_tune_holdout([i.label for i in items["test"]], [i.condition for i in items["test"]], paths,
                                   tune_fraction, split_seed)
        if split_path:
            split.save(split_path)
    return DomainData(str(root), domain, items["train"], items["test"], _stack(items["train"]),
                      _stack(items["test"]), split)
