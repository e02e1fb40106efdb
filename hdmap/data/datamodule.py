"""LightningDataModule: discovers a domain, fixes the tune/holdout split, serves references, tune and holdout."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from hdmap.data.conditions import CONDITIONS
from hdmap.data.hdmap import MapItem, discover_domain, read_map
from hdmap.data.splits import TestSplit, select_references, split_tune_holdout
from hdmap.data.transforms import MapTransform

CONDITION_CODE = {"cold": 0, "warm": 1, "unknown": -1}


class MapDataset(Dataset):
    """Transformed maps with label, condition code and position in the item list."""

    def __init__(self, items: list[MapItem], transform: MapTransform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        array = read_map(item.path)
        return {"image": self.transform(array), "map": torch.from_numpy(array), "label": item.label,
                "condition": CONDITION_CODE[item.condition], "index": i}


class HDMAPDataModule(L.LightningDataModule):
    """One domain of `ROOT/domain_X`; the split is saved to (or loaded from) `split_path`."""

    def __init__(self, data_root: str, domain: str = "C", transform: MapTransform | None = None,
                 shots: int | None = None, reference_seed: int = 0, split_seed: int = 0, tune_fraction: float = 0.3,
                 split_path: str | None = None, condition_csv: str | None = None, batch_size: int = 32,
                 reference_assignment: list[str] | None = None):
        super().__init__()
        self.data_root, self.domain = data_root, domain
        self.transform = transform or MapTransform()
        self.shots, self.reference_seed = shots, reference_seed
        self.split_seed, self.tune_fraction, self.split_path = split_seed, tune_fraction, split_path
        self.condition_csv, self.batch_size = condition_csv, batch_size
        self.reference_assignment = reference_assignment
        self.train_items: list[MapItem] = []
        self.test_items: list[MapItem] = []
        self.split: TestSplit | None = None
        self.reference_indices: list[int] = []

    def setup(self, stage: str | None = None) -> None:
        if self.test_items:
            return
        items = discover_domain(self.data_root, self.domain, self.condition_csv)
        self.train_items, self.test_items = items["train"], items["test"]
        paths = [item.path for item in self.test_items]
        if self.split_path and Path(self.split_path).exists():
            self.split = TestSplit.load(self.split_path)
            self.split.check_matches(paths)
        else:
            self.split = split_tune_holdout([i.label for i in self.test_items], [i.condition for i in self.test_items],
                                            paths, self.tune_fraction, self.split_seed)
            if self.split_path:
                self.split.save(self.split_path)
        self.reference_indices = select_references(len(self.train_items), self.shots, self.reference_seed,
                                                   self.reference_assignment, CONDITIONS)
        self.reference_indices = sorted(self.reference_indices.tolist())

    @property
    def reference_items(self) -> list[MapItem]:
        return [self.train_items[i] for i in self.reference_indices]

    @property
    def tune_items(self) -> list[MapItem]:
        return [self.test_items[i] for i in self.split.tune]

    @property
    def holdout_items(self) -> list[MapItem]:
        return [self.test_items[i] for i in self.split.holdout]

    def _loader(self, items: list[MapItem]) -> DataLoader:
        return DataLoader(MapDataset(items, self.transform), batch_size=self.batch_size, shuffle=False)

    def train_dataloader(self) -> DataLoader:  # references: what a model fits on
        return self._loader(self.reference_items)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.tune_items)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.holdout_items)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_items)
