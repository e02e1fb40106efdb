"""LightningDataModule over precomputed feature grids (the feature cache): fit batches of the chosen train maps,
predict batches of all test maps. Lightning moves each batch to the accelerator."""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hdmap.condition_names import UNKNOWN, code_of
from hdmap.features.npy_stream import RELEASE_EVERY, release_pages

REFERENCE, CALIBRATION = 0, 1  # role of a fit map


class GridDataset(Dataset):
    """Item i: the tap grids, the raw map and the tags of map `indices[i]` (grids are read lazily: memmaps)."""

    def __init__(self, grids: list, maps: np.ndarray, indices, tags: dict[str, np.ndarray]):
        self.grids, self.maps = grids, maps
        self.indices = np.asarray(indices, dtype=np.int64)
        self.tags = {name: np.asarray(values) for name, values in tags.items()}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        if i % RELEASE_EVERY == RELEASE_EVERY - 1:
            for grid in self.grids:  # memory flat in the maps read: mapped pages leave the resident set
                release_pages(grid)
        j = int(self.indices[i])
        item = {"grids": [torch.from_numpy(np.array(g[j], dtype=np.float32)) for g in self.grids],
                "map": torch.from_numpy(np.array(self.maps[j], dtype=np.float32)), "index": j}
        item.update({name: torch.as_tensor(values[i]) for name, values in self.tags.items()})
        return item


class FeatureDataModule(L.LightningDataModule):
    """Cached grids of one domain. A fit's datamodule comes from its plan (`for_fit`): the train maps the fit reads
    (references, then calibration maps), in that order."""

    def __init__(self, train_grids: list, train_maps: np.ndarray, test_grids: list | None = None,
                 test_maps: np.ndarray | None = None, test_conditions: list[str] | None = None,
                 batch_size: int = 32):
        super().__init__()
        self.train_grids, self.train_maps = train_grids, train_maps
        self.test_grids, self.test_maps, self.test_conditions = test_grids, test_maps, test_conditions
        self.batch_size = batch_size
        self.fit_indices = np.zeros(0, dtype=np.int64)
        self.fit_tags: dict[str, np.ndarray] = {}
        self.plan = None  # the FitPlan whose maps a fit epoch reads (for_fit)
        self.predict_indices: np.ndarray | None = None  # test maps to score (None = all)

    @classmethod
    def for_fit(cls, train_grids: list, train_maps: np.ndarray, plan, batch_size: int = 32) -> "FeatureDataModule":
        """The datamodule of one fit: the maps `plan` (a FitPlan) chose, references first."""
        features = cls(train_grids, train_maps, batch_size=batch_size)
        features.plan = plan
        features.fit_indices = np.r_[np.asarray(plan.references, np.int64), np.asarray(plan.calibration, np.int64)]
        features.fit_tags = {"code": np.r_[plan.reference_codes, plan.calibration_codes].astype(np.int64),
                             "role": np.r_[np.full(len(plan.references), REFERENCE),
                                           np.full(len(plan.calibration), CALIBRATION)]}
        return features

    def train_dataloader(self) -> DataLoader:
        if not len(self.fit_indices):
            raise RuntimeError("FeatureDataModule: a fit reads the datamodule its plan made "
                               "(FeatureDataModule.for_fit, or PatchCoreModule.prepare_fit)")
        dataset = GridDataset(self.train_grids, self.train_maps, self.fit_indices, self.fit_tags)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        if self.test_grids is None:
            raise RuntimeError("FeatureDataModule: no test grids to predict on")
        conditions = self.test_conditions or [UNKNOWN] * len(self.test_maps)
        indices = np.arange(len(self.test_maps)) if self.predict_indices is None else self.predict_indices
        tags = {"condition": np.array([code_of(c) for c in conditions])[indices]}
        dataset = GridDataset(self.test_grids, self.test_maps, indices, tags)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False)
