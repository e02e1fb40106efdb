"""The Lightning module around the core (its buffers are the checkpoint)."""
import lightning as L

from toy_kind.model import RowEnergyModel


class RowEnergyModule(L.LightningModule):
    def __init__(self, rows: int = 31):
        super().__init__()
        self.core = RowEnergyModel(rows)
