"""FE-CLIP: train the adapters on an auxiliary set, evaluate zero-shot per category (image AUROC/AP, pixel
AUROC, AUPRO), following the paper's cross-dataset protocol."""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from hdmap.evaluation.metrics import auroc, average_precision, macro_average
from hdmap.evaluation.pro import aupro
from hdmap.models.feclip.module import FEClipModule

PAPER = {"mvtec": {"image_auroc": 91.9, "image_ap": 96.5, "pixel_auroc": 92.6, "aupro": 88.3},
         "visa": {"image_auroc": 84.6, "image_ap": 86.6, "pixel_auroc": 95.9, "aupro": 92.8}}


def train_feclip(module: FEClipModule, dataset: Dataset, epochs: int = 9, batch_size: int = 16,
                 callbacks: list | None = None, progress: bool = True) -> FEClipModule:
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, callbacks=callbacks or [],
                        enable_progress_bar=progress, enable_model_summary=False, accelerator="auto", devices=1)
    trainer.fit(module, DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0))
    return module


@torch.no_grad()
def predict_feclip(module: FEClipModule, dataset: Dataset, batch_size: int = 16) -> dict:
    """Image scores, maps resized to the masks, labels, masks and categories of a dataset."""
    module.eval()
    device = next(module.model.patch_to_text.parameters()).device
    scores, maps, labels, masks, categories = [], [], [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        out = module.model(batch["image"].to(device))
        scores.append(out["score"].cpu())
        maps.append(F.interpolate(out["map"][:, None], size=batch["mask"].shape[-2:], mode="bilinear",
                                  align_corners=False)[:, 0].cpu())
        labels.append(batch["label"])
        masks.append(batch["mask"])
        categories += list(batch.get("category", ["all"] * len(batch["label"])))
    return {"scores": torch.cat(scores).numpy(), "maps": torch.cat(maps).numpy(), "labels": torch.cat(labels).numpy(),
            "masks": torch.cat(masks).numpy(), "categories": np.array(categories)}


def benchmark_metrics(predictions: dict) -> tuple[dict, dict]:
    """(per-category metrics in %, macro average)."""
    per_category = {}
    for category in sorted(set(predictions["categories"])):
        part = predictions["categories"] == category
        scores, labels = predictions["scores"][part], predictions["labels"][part]
        maps, masks = predictions["maps"][part], predictions["masks"][part]
        per_category[category] = {
            "image_auroc": 100 * auroc(scores, labels), "image_ap": 100 * average_precision(scores, labels),
            "pixel_auroc": 100 * auroc(maps.ravel(), (masks.ravel() > 0.5).astype(int)),
            "aupro": 100 * aupro(maps, masks)}
    return per_category, macro_average(per_category)
