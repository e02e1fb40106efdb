"""FE-CLIP: train the adapters on an auxiliary set, evaluate zero-shot per category (image AUROC/AP, pixel
AUROC, AUPRO), following the paper's cross-dataset protocol."""
from __future__ import annotations

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader, Dataset

from hdmap.evaluation.metrics import auroc, average_precision, macro_average
from hdmap.evaluation.pro import aupro
from hdmap.models.feclip.module import FEClipModule
from hdmap.run.trainer import make_trainer

PAPER = {"mvtec": {"image_auroc": 91.9, "image_ap": 96.5, "pixel_auroc": 92.6, "aupro": 88.3},
         "visa": {"image_auroc": 84.6, "image_ap": 86.6, "pixel_auroc": 95.9, "aupro": 92.8}}


def train_feclip(module: FEClipModule, dataset: Dataset, epochs: int = 9, batch_size: int = 16,
                 callbacks: list | None = None, progress: bool = True) -> FEClipModule:
    trainer = make_trainer(progress=progress, max_epochs=epochs, callbacks=callbacks or [])
    trainer.fit(module, DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0))
    return module


def predict_feclip(module: FEClipModule, dataset: Dataset, batch_size: int = 16, during_fit: bool = False) -> dict:
    """Image scores, maps resized to the masks, labels, masks and categories of a dataset. Trainer.predict puts
    CLIP and the adapters on the accelerator; `during_fit` (a callback of a running fit) scores in place on the
    device that fit placed the module on, without a second Trainer."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    if during_fit:
        module.eval()
        with torch.no_grad():
            batches = [module.predict_step(move_data_to_device(batch, module.device), i)
                       for i, batch in enumerate(loader)]
        module.train()
    else:
        batches = make_trainer().predict(module, loader)
    out = {key: torch.cat([b[key] for b in batches]).numpy() for key in ("scores", "maps", "labels", "masks")}
    out["categories"] = np.array([c for b in batches for c in b["categories"]])
    return out


def predict_tokens(module: FEClipModule, dataset: Dataset, batch_size: int = 32) -> torch.Tensor:
    """Adapted patch tokens (N, h*w, D) of a dataset's images, on the accelerator (CPU tensor back)."""
    module.predict_tokens = True
    try:
        batches = make_trainer().predict(module, DataLoader(dataset, batch_size=batch_size, shuffle=False))
    finally:
        module.predict_tokens = False
    return torch.cat([b["tokens"] for b in batches])


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
