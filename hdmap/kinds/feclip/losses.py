"""FE-CLIP losses per tap, averaged: BCE on the image score + focal + dice on the anomaly map."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(probability: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    p = probability.clamp(1e-6, 1 - 1e-6)
    pt = torch.where(target > 0.5, p, 1 - p)
    return (-(1 - pt) ** gamma * torch.log(pt)).mean()


def dice_loss(probability: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Dice on both classes (anomalous and normal pixels), so all-normal masks still give a signal."""
    dims = tuple(range(1, probability.dim()))
    losses = []
    for p, t in ((probability, target), (1 - probability, 1 - target)):
        intersection = (p * t).sum(dims)
        losses.append(1 - (2 * intersection + eps) / (p.sum(dims) + t.sum(dims) + eps))
    return torch.stack(losses).mean()


def feclip_loss(outputs: dict, masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """masks (B, H, W) in {0, 1}, labels (B,). Maps are upsampled to the mask size."""
    total = 0.0
    taps = outputs["maps"].shape[1]
    for t in range(taps):
        prob_map = F.interpolate(outputs["maps"][:, t:t + 1], size=masks.shape[-2:], mode="bilinear",
                                 align_corners=False)[:, 0]
        total = total + focal_loss(prob_map, masks) + dice_loss(prob_map, masks)
        total = total + F.binary_cross_entropy(outputs["tap_scores"][:, t].clamp(1e-6, 1 - 1e-6), labels.float())
    return total / taps
