"""Checkpoint files: a dict `LightningModule.load_from_checkpoint` accepts, written without a Trainer, and the one
safe reader of any checkpoint (tensors and plain containers only: loading never runs code)."""
from __future__ import annotations

import pickle
from pathlib import Path

import lightning as L
import torch


def lightning_checkpoint(module: L.LightningModule, extra: dict | None = None) -> dict:
    """state_dict + hparams (+ our `hdmap` extras), passed through the module's own on_save_checkpoint."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": L.__version__, "hdmap": extra or {}}
    module.on_save_checkpoint(checkpoint)
    return checkpoint


class CheckpointMismatchError(ValueError):
    """A checkpoint applied to data or settings it was not made for."""



def load_data_only(path: str | Path) -> dict:
    """torch.load restricted to tensors and plain containers (`weights_only=True`): a file that holds anything
    else (a pickled object, which could run code when loaded) is refused with one line naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # a pickled object: the payload of a crafted file
            raise CheckpointMismatchError(f"{path}: refused: it holds Python objects other than tensors and plain "
                                          f"containers, and loading them could run code (hdmap never writes "
                                          f"such checkpoints)") from error
        raise CheckpointMismatchError(f"{path}: not a checkpoint (its bytes are not a file torch.save wrote)") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointMismatchError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint
