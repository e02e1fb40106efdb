"""Lightning wrappers: `PatchCore` (one mixed bank) and `GatedPatchCore` (gate + banks) around the torch core.

fit: one pass over all train maps (the datamodule's train loader with shots=None); the core's gate assigns
conditions and picks the references. test/predict: scores. The backbone is rebuilt from hparams, never saved.
"""
from __future__ import annotations


import lightning as L
import torch

from hdmap.data.datamodule import CONDITION_CODE
from hdmap.data.transforms import MapTransform
from hdmap.features.backbones import BackboneSpec, build_backbone
from hdmap.models.patchcore import GatedPatchCoreModel, PatchCoreConfig

CODE_TO_CONDITION = {code: name for name, code in CONDITION_CODE.items()}


def _names(codes: torch.Tensor) -> list[str]:
    return [CODE_TO_CONDITION[int(c)] for c in codes]


class GatedPatchCore(L.LightningModule):
    """Gated PatchCore; `model` is a PatchCoreConfig as a dict, `backbone` a BackboneSpec as a dict."""

    def __init__(self, backbone: dict | None = None, model: dict | None = None, image_size: int = 384,
                 resize: str = "aspect", normalisation: str = "backbone"):
        super().__init__()
        self.save_hyperparameters()
        spec = dict(backbone or {})
        spec["taps"] = tuple(spec.get("taps", BackboneSpec().taps))
        self.backbone_spec = BackboneSpec(**spec)
        self.core = GatedPatchCoreModel(PatchCoreConfig(**(model or {})))
        self.automatic_optimization = False
        self._backbone: list = []  # kept out of the state dict: weights come from hparams
        self._train_batches: list[dict] = []
        self.outputs: list[dict] = []

    def backbone(self):
        if not self._backbone:
            self._backbone.append(build_backbone(self.backbone_spec).to(self.device))
        return self._backbone[0]

    def transform(self) -> MapTransform:
        """The input transform this model expects (size multiple and normalisation of its backbone)."""
        backbone = self.backbone()
        return MapTransform(self.hparams.image_size, self.hparams.resize, self.hparams.normalisation,
                            backbone.stride, backbone.mean_std)

    def configure_optimizers(self):
        return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Save the model settings as fitted (a one-sided gate may have turned `soft` into `mixed`)."""
        checkpoint["hyper_parameters"] = {**checkpoint.get("hyper_parameters", {}),
                                          "model": self.core.config.to_dict()}

    def on_train_epoch_start(self) -> None:
        self._train_batches = []

    def training_step(self, batch, batch_idx):
        grids = [g.cpu() for g in self.backbone()(batch["image"])]
        self._train_batches.append({"grids": grids, "map": batch["map"].cpu(), "condition": batch["condition"].cpu()})

    def on_train_epoch_end(self) -> None:
        batches = self._train_batches
        grids = [torch.cat([b["grids"][t] for b in batches]) for t in range(len(batches[0]["grids"]))]
        maps = torch.cat([b["map"] for b in batches])
        truth = _names(torch.cat([b["condition"] for b in batches]))
        self.core.fit(grids, maps, truth)
        self._train_batches = []

    def _score_batch(self, batch) -> dict:
        grids = [g.cpu() for g in self.backbone()(batch["image"])]
        known = _names(batch["condition"])
        out = self.core.score(grids, batch["map"].cpu(), known, upsample=True)  # only the oracle gate reads `known`
        out.update(label=batch["label"].cpu(), condition=batch["condition"].cpu())
        return out

    def on_test_epoch_start(self) -> None:
        self.outputs = []

    def test_step(self, batch, batch_idx):
        self.outputs.append(self._score_batch(batch))

    def predict_step(self, batch, batch_idx):
        return self._score_batch(batch)


class PatchCore(GatedPatchCore):
    """Plain PatchCore: one mixed bank from 2k uniformly sampled references."""

    def __init__(self, backbone: dict | None = None, model: dict | None = None, image_size: int = 384,
                 resize: str = "aspect", normalisation: str = "backbone"):
        model = {**(model or {}), "bank_mode": "mixed", "reference_sampling": "uniform"}
        super().__init__(backbone, model, image_size, resize, normalisation)

