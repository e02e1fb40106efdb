"""Lightning wrapper of the band detector: its settings are hyper-parameters and its fitted statistics buffers, so a
checkpoint is data only and `load_from_checkpoint` rebuilds it. Fitting is statistics of the train maps (no
epochs, no optimiser): `fit` calls the torch core directly."""
from __future__ import annotations

import lightning as L
import torch

from hdmap.config import plain
from hdmap.models.band import BandSettings, BandModel, legacy_band_settings, legacy_band_state


class BandModule(L.LightningModule):
    """The band kind's module; `band` is a BandSettings as a dict, `shape` the (rows, columns) of a map."""

    def __init__(self, band: dict | None = None, shape: tuple[int, int] = (31, 95)):
        super().__init__()
        self.save_hyperparameters()
        self.core = BandModel(BandSettings(**(band or {})), tuple(shape))

    def fit(self, train_maps, train_truth: list[str] | None = None) -> "BandModule":
        self.core.fit(train_maps, train_truth)
        return self

    def score(self, maps, known: list[str] | None = None) -> dict:
        return self.core.score(maps, known)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hyper_parameters"] = {**checkpoint.get("hyper_parameters", {}),
                                          "band": plain(self.core.config), "shape": list(self.core.shape)}
        checkpoint["fit_notes"] = {"notes": list(self.core.notes), "gate_train_source": self.core.gate.train_source}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        band = checkpoint.get("hyper_parameters", {}).get("band") or {}
        if "statistic" not in band:  # a checkpoint from before the filter family: rebuilt as the one filter it was
            self.core = BandModel(BandSettings(**legacy_band_settings(band)), self.core.shape)
            legacy_band_state(checkpoint.get("state_dict", {}), "core.")
        saved = checkpoint.get("fit_notes", {})
        self.core.notes = list(saved.get("notes", []))
        self.core.gate.train_source = saved.get("gate_train_source", "")

    @property
    def device_used(self) -> torch.device:
        return self.core.mean_map.device
