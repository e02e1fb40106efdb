"""Lightning wrapper of FE-CLIP: trains only the adapters and the linear map; checkpoints hold only those
(plus hparams) and reload onto a freshly built frozen CLIP."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from hdmap.evaluation.metrics import auroc
from hdmap.models.checkpoint_files import lightning_checkpoint
from hdmap.kinds.feclip.losses import feclip_loss
from hdmap.kinds.feclip.model import FEClipModel, FEClipSettings

FROZEN_PREFIX = "model.visual."


class FEClipModule(L.LightningModule):
    """Batches are dicts with `image` (B, 3, S, S), `mask` (B, H, W) and `label` (B,)."""

    def __init__(self, model: dict | None = None, lr: float = 5e-4, linear_lr: float = 5e-4):
        super().__init__()
        self.save_hyperparameters()
        self.model = FEClipModel(FEClipSettings(**(model or {})))
        # what predict_step returns: `scores` (scores, maps, ...), `tokens` (patch tokens only: few-shot memories)
        # or `both` (one pass serves scores and the few-shot distances of test maps)
        self.predictions = "scores"
        self._val: list[tuple] = []

    def forward(self, images: torch.Tensor) -> dict:
        return self.model(images)

    def configure_optimizers(self):
        return torch.optim.Adam([
            {"params": self.model.adapters.parameters(), "lr": self.hparams.lr},
            {"params": self.model.patch_to_text.parameters(), "lr": self.hparams.linear_lr},
        ])

    def training_step(self, batch, batch_idx):
        loss = feclip_loss(self.model(batch["image"]), batch["mask"].float(), batch["label"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch, batch_idx):
        out = self.model(batch["image"])
        maps = F.interpolate(out["map"][:, None], size=batch["mask"].shape[-2:], mode="bilinear",
                             align_corners=False)[:, 0]
        self._val.append((out["score"].cpu(), batch["label"].cpu(), maps.cpu(), batch["mask"].cpu()))

    def on_validation_epoch_end(self) -> None:
        scores, labels, maps, masks = (torch.cat(parts) for parts in zip(*self._val))
        image = auroc(scores.numpy(), labels.numpy())
        pixel = auroc(maps.flatten().numpy(), (masks.flatten() > 0.5).numpy())
        self.log_dict({"val_image_auroc": image, "val_pixel_auroc": pixel})

    def predict_step(self, batch, batch_idx):
        """Image scores and maps at the masks' size (CPU), computed on the device Lightning placed the module on;
        patch tokens (for few-shot memories) stay on that device."""
        if self.predictions == "tokens":
            return {"tokens": self.model.patch_tokens(batch["image"])}
        out = self.model(batch["image"])
        maps = F.interpolate(out["map"][:, None], size=batch["mask"].shape[-2:], mode="bilinear",
                             align_corners=False)[:, 0]
        result = {"scores": out["score"].cpu(), "maps": maps.cpu(), "labels": batch["label"].cpu(),
                  "masks": batch["mask"].cpu(), "categories": list(batch.get("category", ["all"] * len(maps)))}
        if self.predictions == "both":
            result["tokens"] = out["patch_tokens"]
        return result

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only what was trained: the frozen CLIP is rebuilt from hparams on load."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if not k.startswith(FROZEN_PREFIX)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        frozen = {k: v for k, v in self.state_dict().items() if k.startswith(FROZEN_PREFIX)}
        checkpoint["state_dict"] = {**frozen, **checkpoint["state_dict"]}

    def trainer_free_save(self, path) -> None:
        """Save a checkpoint (trained parameters + hparams) without a Trainer."""
        torch.save(lightning_checkpoint(self), path)
