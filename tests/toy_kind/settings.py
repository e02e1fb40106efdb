"""The toy kind's settings tree: what its runs receive, typed."""
from dataclasses import dataclass

from hdmap.run.settings import SplitSettings
from hdmap.setting_rules import setting


@dataclass(frozen=True)
class ToySettings:
    rows: int = setting(31, "rows of a map", low=1)


@dataclass(frozen=True)
class ToyRun:
    model_name: str = setting("toy", "the model kind", choices=("toy",))
    toy: ToySettings = setting(help="the row-energy score", factory=ToySettings)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)
