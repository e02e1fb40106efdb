"""The Lightning module of the PatchCore kinds around the torch core (model.py): gate, banks and fusion as settings.

fit: `prepare_fit` (gate on all train maps, choice of references) returns the datamodule of the chosen maps; the
training epoch over it reads their cached grids batch by batch and builds the banks on the accelerator Lightning
placed the module on. predict: each batch is scored on the module's device. No backbone here: features come from the
feature cache, so a checkpoint holds banks, gate and statistics only.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch

from hdmap.condition_names import names_of
from hdmap.features.feature_datamodule import CALIBRATION, REFERENCE, FeatureDataModule
from hdmap.models.fit_embeddings import FitEmbeddings
from hdmap.models.band import legacy_band_settings, legacy_band_state
from hdmap.models.knn_choice import knn_choice
from hdmap.kinds.patchcore.model import PatchCoreModel
from hdmap.kinds.patchcore.settings import FitPlan, PatchCoreSettings


class PatchCoreModule(L.LightningModule):
    """PatchCore (both kinds); `model` is a PatchCoreSettings as a dict (the features, and so the backbone settings, come
    from the feature cache: the run's checkpoint record keeps them)."""

    def __init__(self, model: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.core = PatchCoreModel(PatchCoreSettings(**(model or {})))
        self.automatic_optimization = False
        self.plan: FitPlan | None = None
        self.devices_used: dict[str, str] = {}  # where banks and kNN ran (reported in metrics.json)
        self._fit: FitEmbeddings | None = None

    def prepare_fit(self, train_grids: list, train_maps, condition_stats=None, train_truth: list[str] | None = None,
                    batch_size: int = 32) -> FeatureDataModule:
        """Take the fitted condition statistics, fit the gate on all train maps, choose the maps the training epoch
        reads, and return the datamodule of exactly those maps: `Trainer.fit(module, datamodule=...)` with it is
        the fit (an epoch over any other datamodule is refused)."""
        self.plan = self.core.plan_fit(train_maps, condition_stats, self.core.global_features(train_grids), train_truth)
        return FeatureDataModule.for_fit(train_grids, train_maps, self.plan, batch_size)

    def configure_optimizers(self):
        return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The model settings as asked, and beside them what the fit decided (a gate that did not split train
        clearly: one mixed bank instead)."""
        checkpoint["hyper_parameters"] = {**checkpoint.get("hyper_parameters", {}),
                                          "model": self.core.settings.to_dict()}
        checkpoint["fit_notes"] = {"notes": list(self.core.notes), "gate_train_source": self.core.gate.train_source,
                                   "fallback": self.core.fallback}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """What the fit had to decide (fallbacks, how the gate assigned train) stays with the model."""
        state = checkpoint.get("state_dict", {})
        model = checkpoint.get("hyper_parameters", {}).get("model") or {}
        if "statistic" not in model.get("band", {"statistic": None}):  # fused before the band filter family
            self.core = PatchCoreModel(PatchCoreSettings(**{**model, "band": legacy_band_settings(model["band"])}))
            legacy_band_state(state, "core.band.")
        for key in [k for k in state if k.startswith("core.map_stats.")]:  # its name before hdmap 0.1 wave 4
            state["core.condition_stats." + key[len("core.map_stats."):]] = state.pop(key)
        for key, value in self.state_dict().items():  # checkpoints from before the condition statistics existed
            if key.startswith(("core.condition_stats.", "core.band.", "core.fusion_")) and key not in state:
                state[key] = value
        saved = checkpoint.get("fit_notes", {})
        self.core.apply_fallback(saved.get("fallback"))  # before the state loads: the banks the fit built
        self.core.notes = list(saved.get("notes", []))
        self.core.gate.train_source = saved.get("gate_train_source", "")

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.plan is None or getattr(datamodule, "plan", None) is not self.plan:
            raise RuntimeError("fit with the datamodule prepare_fit(...) returned: it reads the maps this model's "
                               "plan chose")
        plan = self.plan  # the datamodule reads these maps in this order (FeatureDataModule.for_fit)
        roles = np.r_[np.full(len(plan.references), REFERENCE), np.full(len(plan.calibration), CALIBRATION)]
        codes = np.r_[plan.reference_codes, plan.calibration_codes]
        self._fit = FitEmbeddings(roles, codes, self.core.bank_streams)

    def training_step(self, batch, batch_idx):
        if self._fit is None:
            raise RuntimeError("fit with the datamodule prepare_fit(...) returned")
        self._fit.add(self.core.embed(batch["grids"], batch["map"]), batch["map"])

    def on_train_epoch_end(self) -> None:
        """Banks from the streams the references' patches went to, then soft-mode and fusion calibration on the
        held-out maps."""
        fit, self._fit = self._fit, None
        fit.check_complete()
        self.core.finish_banks(fit.streams)
        embedding, maps, codes = fit.calibration()
        if len(codes) and self.core.config.bank_mode == "soft":
            self.core.calibrate(embedding, codes)
        if len(codes) and self.core.config.fused:
            self.core.calibrate_fusion(embedding, maps, codes)

    def _score_batch(self, batch) -> dict:
        known = names_of(batch["condition"])  # only the oracle gate reads it
        out = self.core.score_batch(batch["grids"], batch["map"], known)
        bank = next(iter(self.core.banks.values())).features
        choice = knn_choice(bank.device)
        self.devices_used = {"banks": str(bank.device), "knn": choice.backend, "knn_reason": choice.reason}
        out = {key: value.cpu() for key, value in out.items()}
        out.update({key: batch[key].cpu() for key in ("label", "index", "condition") if key in batch})
        return out

    def predict_step(self, batch, batch_idx):
        return self._score_batch(batch)


def gather_predictions(batches: list[dict]) -> dict:
    """Concatenate predict_step outputs (in dataloader order) into one dict of CPU tensors."""
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}

