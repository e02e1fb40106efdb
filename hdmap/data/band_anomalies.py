"""Synthetic fault bands on normal maps (FE-CLIP variant 1): thin horizontal bands of random row, length,
width and contrast, with their pixel masks — the fault physics of HDMAP, usable as auxiliary training data."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BandSpec:
    width: tuple[int, int] = (1, 2)  # rows, inclusive
    length: tuple[float, float] = (0.3, 1.0)  # fraction of the columns
    contrast: tuple[float, float] = (1.2, 2.0)  # multiplicative


def add_band(array: np.ndarray, rng: np.random.Generator, spec: BandSpec = BandSpec()) -> tuple[np.ndarray, np.ndarray]:
    """(map with one band, mask) for a (H, W) float32 map; values are scaled, never clipped."""
    rows, cols = array.shape
    width = int(rng.integers(spec.width[0], spec.width[1] + 1))
    row = int(rng.integers(0, rows - width + 1))
    length = max(1, int(round(rng.uniform(*spec.length) * cols)))
    start = int(rng.integers(0, cols - length + 1))
    out = array.astype(np.float32, copy=True)
    out[row:row + width, start:start + length] *= rng.uniform(*spec.contrast)
    mask = np.zeros_like(out)
    mask[row:row + width, start:start + length] = 1.0
    return out, mask


def band_training_set(maps: np.ndarray, fault_fraction: float = 0.5, seed: int = 0,
                      spec: BandSpec = BandSpec()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps, masks, labels): a `fault_fraction` share of the normal maps gets one band each."""
    rng = np.random.default_rng(seed)
    images, masks, labels = [], [], []
    for array in maps:
        if rng.random() < fault_fraction:
            image, mask = add_band(array, rng, spec)
            images.append(image), masks.append(mask), labels.append(1)
        else:
            images.append(array.astype(np.float32)), masks.append(np.zeros_like(array, np.float32)), labels.append(0)
    return np.stack(images), np.stack(masks), np.array(labels)
