"""MVTec AD and VisA readers (published folder layouts) for FE-CLIP training and benchmarking.

MVTec AD: ROOT/<category>/{train/good, test/<defect>}/*.png, masks in ROOT/<category>/ground_truth/<defect>/
<name>_mask.png (test/good has none). VisA: ROOT/split_csv/1cls.csv with columns object, split, label
(normal/anomaly), image, mask (paths relative to ROOT).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hdmap.data.transforms import MEAN_STD

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class DatasetLayoutError(FileNotFoundError):
    """A data set folder, CSV or file that is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Sample:
    category: str
    split: str  # train / test
    image: str
    mask: str | None
    label: int  # 0 normal, 1 anomalous


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_mvtec(root: str | Path, categories: list[str] | None = None, split: str = "test") -> list[Sample]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"MVTec AD root not found: {root}")
    found = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
    if not found:
        raise DatasetLayoutError(f"no MVTec AD categories (folders with test/) under {root}")
    samples = []
    for category in categories or found:
        split_dir = root / category / split
        if not split_dir.is_dir():
            raise DatasetLayoutError(f"MVTec AD folder not found: {split_dir}")
        for defect_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for image in _images(defect_dir):
                if defect_dir.name == "good":
                    samples.append(Sample(category, split, str(image), None, 0))
                    continue
                mask = root / category / "ground_truth" / defect_dir.name / f"{image.stem}_mask.png"
                if not mask.is_file():
                    raise DatasetLayoutError(f"mask not found for {image}: expected {mask}")
                samples.append(Sample(category, split, str(image), str(mask), 1))
    return samples


def read_visa(root: str | Path, categories: list[str] | None = None, split: str = "test",
              split_csv: str = "split_csv/1cls.csv") -> list[Sample]:
    root = Path(root)
    table = root / split_csv
    if not table.is_file():
        raise DatasetLayoutError(f"VisA split CSV not found: {table}")
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        needed = {"object", "split", "label", "image", "mask"}
        if not needed <= set(reader.fieldnames or []):
            raise DatasetLayoutError(f"{table}: needs columns {sorted(needed)}, has {reader.fieldnames}")
        rows = list(reader)
    samples = []
    for line, row in enumerate(rows, start=2):
        if row["split"] != split or (categories and row["object"] not in categories):
            continue
        if row["label"] not in ("normal", "anomaly"):
            raise DatasetLayoutError(f"{table}:{line}: label must be normal or anomaly, got {row['label']!r}")
        image = root / row["image"]
        if not image.is_file():
            raise DatasetLayoutError(f"{table}:{line}: image not found: {image}")
        mask = root / row["mask"] if row["mask"].strip() else None
        if row["label"] == "anomaly" and (mask is None or not mask.is_file()):
            raise DatasetLayoutError(f"{table}:{line}: mask of anomalous image not found: {mask}")
        samples.append(Sample(row["object"], split, str(image), str(mask) if mask else None,
                              int(row["label"] == "anomaly")))
    if not samples:
        raise DatasetLayoutError(f"{table}: no rows for split '{split}' and categories {categories or 'all'}")
    return samples


READERS = {"mvtec": read_mvtec, "visa": read_visa}


def load_rgb(path: str, size: int) -> torch.Tensor:
    from PIL import Image

    try:
        image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    except Exception as error:
        raise DatasetLayoutError(f"{path}: cannot be read as an image ({error})") from error
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def load_mask(path: str | None, size: int) -> torch.Tensor:
    from PIL import Image

    if path is None:
        return torch.zeros(size, size)
    mask = Image.open(path).convert("L").resize((size, size), Image.NEAREST)
    return torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))


class IndustrialDataset(Dataset):
    """image (3, S, S) CLIP-normalised, mask (S, S), label, category."""

    def __init__(self, samples: list[Sample], image_size: int, mask_size: int | None = None):
        self.samples, self.image_size, self.mask_size = samples, image_size, mask_size or image_size
        mean, std = MEAN_STD["clip"]
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        image = (load_rgb(sample.image, self.image_size) - self.mean) / self.std
        return {"image": image, "mask": load_mask(sample.mask, self.mask_size), "label": sample.label,
                "category": sample.category}
