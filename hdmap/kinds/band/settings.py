"""The settings tree of `band` runs: the band detector alone (its own settings: hdmap/models/band.py)."""
from __future__ import annotations

from dataclasses import dataclass

from hdmap.models.band import BandSettings
from hdmap.run.settings import SplitSettings
from hdmap.setting_rules import setting


@dataclass(frozen=True)
class BandRun:
    """`band` runs: the band detector alone, no backbone."""

    model_name: str = setting("band", "the model kind", choices=("band",))
    band: BandSettings = setting(help="the band detector", factory=BandSettings)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)
