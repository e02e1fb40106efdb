"""Map -> model input: resize (nearest / bilinear / aspect), 3 channels, normalisation. Values are never clipped."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = ("nearest", "bilinear", "aspect")
NORMALISATIONS = ("none", "imagenet", "clip", "backbone")
MEAN_STD = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def round_to_multiple(value: float, multiple: int) -> int:
    """Nearest positive multiple of `multiple`."""
    return max(multiple, int(round(value / multiple)) * multiple)


def output_size(height: int, width: int, image_size: int, resize: str, multiple: int) -> tuple[int, int]:
    """Target (h, w). Square modes give image_size x image_size; `aspect` keeps h:w with the width
    rounded to `multiple` near image_size and the height rounded to `multiple` (31x95 at 378 -> 126x378 for /14)."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if resize == "aspect":
        out_w = round_to_multiple(image_size, multiple)
        return round_to_multiple(out_w * height / width, multiple), out_w
    return image_size, image_size


@dataclass(frozen=True)
class MapTransform:
    """Turns one float32 map (H, W) into a normalised (3, h, w) tensor."""

    image_size: int = 224
    resize: str = "bilinear"
    normalisation: str = "backbone"
    multiple: int = 14
    backbone_mean_std: tuple = MEAN_STD["imagenet"]

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        output_size(31, 95, self.image_size, self.resize, self.multiple)  # validates resize

    def mean_std(self) -> tuple:
        return self.backbone_mean_std if self.normalisation == "backbone" else MEAN_STD[self.normalisation]

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        return self.batch([array])[0]

    def batch(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """Transform maps of equal size at once -> (N, 3, h, w)."""
        x = torch.from_numpy(np.stack(arrays).astype(np.float32, copy=False))[:, None]
        size = output_size(x.shape[-2], x.shape[-1], self.image_size, self.resize, self.multiple)
        mode = "nearest" if self.resize == "nearest" else "bilinear"
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        x = F.interpolate(x, size=size, mode=mode, **kwargs).repeat(1, 3, 1, 1)
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in self.mean_std())
        return (x - mean) / std
