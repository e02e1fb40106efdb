"""The one Lightning Trainer every fit and score runs through: it picks the accelerator and places module and batches."""
from __future__ import annotations

import logging
import warnings

import lightning as L
import torch

QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")


def accelerator_device(accelerator: str = "auto") -> torch.device:
    """The device a Trainer with this accelerator places modules on (features are extracted there too)."""
    return torch.device(make_trainer(accelerator).strategy.root_device)


def make_trainer(accelerator: str = "auto", progress: bool = False, **kwargs) -> L.Trainer:
    """A single-device Trainer with no logger, no checkpoint callback and no sanity check."""
    for name in QUIET_LOGGERS:  # "GPU available: ..." banners on every trial drown the search's output
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*configure_optimizers` returned `None`.*")  # banks need none
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # inside Lightning 2.6
    warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")  # frozen CLIP
    return L.Trainer(accelerator=accelerator, devices=1, max_epochs=kwargs.pop("max_epochs", 1), logger=False,
                     enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                     num_sanity_val_steps=0, **kwargs)
