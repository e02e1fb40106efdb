"""FE-CLIP training and prediction through a Lightning Trainer: fit the adapters on a dataset (an auxiliary set, or
band anomalies on HDMAP train normals), predict scores, maps and adapted patch tokens."""
from __future__ import annotations

import random

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader, Dataset

from hdmap.kinds.feclip.module import FEClipModule
from hdmap.run.trainer import accelerator_device, make_trainer


def seed_everything(seed: int) -> None:
    """Seed every generator FE-CLIP draws from (torch, numpy, random), without Lightning's log line."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_precision(precision: str = "auto") -> str:
    """Lightning's precision for `train.precision`: auto = bf16-mixed on a CUDA GPU that supports bfloat16 (the
    trainer's device), else 32-true."""
    if precision == "auto":
        device = accelerator_device()
        precision = "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32"
    return "32-true" if precision == "32" else precision


def train_feclip(module: FEClipModule, dataset: Dataset, epochs: int = 9, batch_size: int = 16,
                 callbacks: list | None = None, progress: bool = True, seed: int = 0,
                 precision: str = "auto") -> FEClipModule:
    """Fit the adapters; the batch order comes from its own generator seeded by `seed`, so scoring between
    epochs (which draws from the global generator) does not change what is trained."""
    order = torch.Generator().manual_seed(seed)
    trainer = make_trainer(progress=progress, max_epochs=epochs, callbacks=callbacks or [],
                           precision=training_precision(precision))
    trainer.fit(module, DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, generator=order))
    return module


def _predict_batches(module: FEClipModule, dataset: Dataset, batch_size: int, during_fit: bool) -> list:
    """predict_step over a dataset. Trainer.predict puts CLIP and the adapters on the accelerator; `during_fit`
    (a callback of a running fit) runs in place on the device fit placed the module on, without a second Trainer."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    if not during_fit:
        return make_trainer().predict(module, loader)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        batches = [module.predict_step(move_data_to_device(batch, module.device), i) for i, batch in enumerate(loader)]
    module.train(was_training)
    return batches


def predict_feclip(module: FEClipModule, dataset: Dataset, batch_size: int = 16, during_fit: bool = False,
                   with_tokens: bool = False) -> dict:
    """Image scores, maps resized to the masks, labels, masks and categories of a dataset (numpy); with
    `with_tokens` also the adapted patch tokens from the same pass (a tensor on the device the model ran on)."""
    module.predictions = "both" if with_tokens else "scores"
    try:
        batches = _predict_batches(module, dataset, batch_size, during_fit)
    finally:
        module.predictions = "scores"
    out = {key: torch.cat([b[key] for b in batches]).numpy() for key in ("scores", "maps", "labels", "masks")}
    out["categories"] = np.array([c for b in batches for c in b["categories"]])
    if with_tokens:
        out["tokens"] = torch.cat([b["tokens"] for b in batches])
    return out


def predict_tokens(module: FEClipModule, dataset: Dataset, batch_size: int = 32,
                   during_fit: bool = False) -> torch.Tensor:
    """Adapted patch tokens (N, h*w, D) of a dataset's images, on the device the model ran on."""
    module.predictions = "tokens"
    try:
        batches = _predict_batches(module, dataset, batch_size, during_fit)
    finally:
        module.predictions = "scores"
    return torch.cat([b["tokens"] for b in batches])


