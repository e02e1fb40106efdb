"""A checkpoint `LightningModule.load_from_checkpoint` accepts, written without a Trainer."""
from __future__ import annotations

import lightning as L


def lightning_checkpoint(module: L.LightningModule, extra: dict | None = None) -> dict:
    """state_dict + hparams (+ our `hdmap` extras), passed through the module's own on_save_checkpoint."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": L.__version__, "hdmap": extra or {}}
    module.on_save_checkpoint(checkpoint)
    return checkpoint
