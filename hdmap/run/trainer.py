"""The one Lightning Trainer every fit and score runs through: it picks the accelerator and places module and batches."""
from __future__ import annotations

import logging
import os
import warnings

import lightning as L
import torch

from hdmap.progress import StageProgress

QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")
ACCELERATOR_ENV = "HDMAP_ACCELERATOR"  # cpu | gpu: what `auto` means in this process (a Tune trial sets it)


def resolved(accelerator: str) -> str:
    """`auto` as this process's HDMAP_ACCELERATOR says (a trial's own GPUs, or none), else Lightning's `auto`."""
    return os.environ.get(ACCELERATOR_ENV) or "auto" if accelerator == "auto" else accelerator


def accelerator_device(accelerator: str = "auto") -> torch.device:
    """The device a Trainer with this accelerator places modules on (features are extracted there too)."""
    return torch.device(make_trainer(accelerator).strategy.root_device)


class StageLines(L.Callback):
    """Progress of each fit epoch (PatchCore: embedding the references) and of predict, as `StageProgress` prints
    it: lines in a log once a stage runs a few seconds, a bar on a terminal."""

    def __init__(self):
        self.progress: StageProgress | None = None

    def _start(self, stage: str, total) -> None:
        self.progress = StageProgress(stage, int(sum(total) if isinstance(total, list) else total), "batches").start()

    def _advance(self, *args, **kwargs) -> None:
        if self.progress is not None:
            self.progress.advance()

    def _end(self, *args, **kwargs) -> None:
        if self.progress is not None:
            self.progress.finish()
            self.progress = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start(f"fit epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", trainer.num_training_batches)

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._start("predict", trainer.num_predict_batches)

    on_train_batch_end = on_predict_batch_end = _advance
    on_train_epoch_end = on_predict_epoch_end = _end


def make_trainer(accelerator: str = "auto", progress: bool = False, **kwargs) -> L.Trainer:
    """A single-device Trainer with no logger, no checkpoint callback and no sanity check; without Lightning's own
    bar (`progress`), `StageLines` reports the long stages."""
    for name in QUIET_LOGGERS:  # "GPU available: ..." banners on every trial drown the search's output
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*configure_optimizers` returned `None`.*")  # banks need none
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # inside Lightning 2.6
    warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")  # frozen CLIP
    return L.Trainer(accelerator=resolved(accelerator), devices=1, max_epochs=kwargs.pop("max_epochs", 1), logger=False,
                     enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                     num_sanity_val_steps=0, callbacks=kwargs.pop("callbacks", []) + ([] if progress else [StageLines()]),
                     **kwargs)
