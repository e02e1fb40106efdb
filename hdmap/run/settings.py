"""The settings every model kind shares: the tune/holdout split and the inputs of a backbone; and `Run`, what every
kind's settings tree is. Each kind declares its own tree in its folder (hdmap/kinds/<kind>/settings.py) as dataclasses
whose fields declare type, choices, range and help (hdmap/setting_rules.py); `check_settings("", config, tree)` checks a
whole config against it at the edge (CLI, config file, search space, trial, checkpoint), and docs/settings.md is
generated from the trees.

A checked config becomes its kind's frozen tree once, at the edge (`hdmap.kinds.registry.settings_of`); kinds,
pipelines and jobs receive that tree (`Run`), and records (metrics.json, checkpoints) keep `plain(run)`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hdmap.config import SPLIT_DEFAULT
from hdmap.data.transforms import NORMALISATIONS, RESIZE_MODES
from hdmap.setting_rules import setting

SMALLEST_INPUT = 14  # px: one ViT patch; any smaller input has no patch grid


@dataclass(frozen=True)
class SplitSettings:
    """The tune/holdout split of the test maps (stratified by label and condition; hdmap/data/splits.py)."""

    tune_fraction: float = setting(SPLIT_DEFAULT["tune_fraction"], "share of the test maps in the tune block "
                                   "(thresholds and model selection); the rest is holdout, reported once", low=0,
                                   high=1, low_open=True, high_open=True)
    seed: int = setting(SPLIT_DEFAULT["seed"], "seed of the split", low=0)


@dataclass(frozen=True)
class InputSettings:
    image_size: int = setting(448, "width of the backbone's input (aspect: the height follows the map's ratio), "
                              "rounded to the backbone's stride", low=SMALLEST_INPUT)
    resize: str = setting("aspect", "map -> input: keep the 31 x 95 aspect (aspect) or a square (bilinear, nearest)",
                          choices=RESIZE_MODES)
    normalisation: str = setting("backbone", "input normalisation: the backbone's own mean/std (backbone), "
                                 "imagenet, clip, or none", choices=NORMALISATIONS)


class Run(Protocol):
    """The typed settings of one run, whatever its kind: a frozen dataclass tree with at least these two fields."""

    model_name: str
    split: SplitSettings
