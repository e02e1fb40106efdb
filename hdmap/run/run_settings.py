"""The settings tree of each model kind: every key a run config may hold, as dataclasses whose fields declare type,
choices, range and help (hdmap/setting_rules.py). `check_settings("", config, tree)` checks a whole config against
its kind's tree at the edge (CLI, config file, search space, trial, checkpoint); docs/settings.md is generated from
these trees. The defaults of a run are its kind's `defaults()` (a backbone preset sets backbone, image size and
resize).

A checked config becomes its kind's frozen tree once, at the edge (`hdmap.kinds.registry.settings_of`); kinds,
pipelines and jobs receive that tree (`Run`), and records (metrics.json, checkpoints) keep `plain(run)`."""
from __future__ import annotations

from dataclasses import dataclass

from hdmap.config import SPLIT_DEFAULT
from hdmap.data.transforms import NORMALISATIONS, RESIZE_MODES
from hdmap.features.backbones import BackboneSpec
from hdmap.gating.gates import GateConfig
from hdmap.models.band import BandConfig
from hdmap.models.feclip.model import FEClipConfig
from hdmap.models.patchcore_config import PatchCoreConfig
from hdmap.setting_rules import setting

FECLIP_TRAIN_SOURCES = ("checkpoint", "hdmap_bands", "none")
SMALLEST_INPUT = 14  # px: one ViT patch; any smaller input has no patch grid


@dataclass(frozen=True)
class SplitSettings:
    """The tune/holdout split of the test maps (stratified by label and condition; hdmap/data/splits.py)."""

    tune_fraction: float = setting(SPLIT_DEFAULT["tune_fraction"], "share of the test maps in the tune block "
                                   "(thresholds and model selection); the rest is holdout, reported once", low=0,
                                   high=1, low_open=True, high_open=True)
    seed: int = setting(SPLIT_DEFAULT["seed"], "seed of the split")


@dataclass(frozen=True)
class FEClipTrainSettings:
    source: str = setting("hdmap_bands", "adapters trained elsewhere (checkpoint), on band anomalies synthesised on "
                          "this domain's train normals (hdmap_bands, variant 1), or untrained (none)",
                          choices=FECLIP_TRAIN_SOURCES)
    checkpoint: str | None = setting(None, "source checkpoint: the adapters' file", path=True)
    epochs: int = setting(9, "training epochs", low=1)
    batch_size: int = setting(16, "maps per batch (training and scoring)", low=1)
    lr: float = setting(5e-4, "learning rate of the adapters; 0 freezes them", low=0)
    linear_lr: float = setting(5e-4, "learning rate of the linear patch map; 0 freezes it", low=0)
    fault_fraction: float = setting(0.5, "share of training maps given a synthetic band", low=0, high=1)
    seed: int = setting(0, "seed of the synthetic bands, batches and few-shot references")


@dataclass(frozen=True)
class FewShotSettings:
    shots: int = setting(0, "variant 2: references per condition in the few-shot patch memory added to the "
                         "zero-shot map; 0 = zero-shot only", low=0)
    weight: float = setting(1.0, "weight of the few-shot map", low=0)
    gate: GateConfig = setting(help="the gate choosing the condition's memory", factory=GateConfig)
    calibration_maps: int = setting(8, "held-out train normals per condition standardising the few-shot map", low=2)


@dataclass(frozen=True)
class InputSettings:
    image_size: int = setting(448, "width of the backbone's input (aspect: the height follows the map's ratio), "
                              "rounded to the backbone's stride", low=SMALLEST_INPUT)
    resize: str = setting("aspect", "map -> input: keep the 31 x 95 aspect (aspect) or a square (bilinear, nearest)",
                          choices=RESIZE_MODES)
    normalisation: str = setting("backbone", "input normalisation: the backbone's own mean/std (backbone), "
                                 "imagenet, clip, or none", choices=NORMALISATIONS)


@dataclass(frozen=True)
class PatchCoreRun(InputSettings):
    """`gated_patchcore` and `patchcore` runs."""

    model_name: str = setting("gated_patchcore", "the model kind", choices=("gated_patchcore", "patchcore"))
    backbone: BackboneSpec = setting(help="the frozen feature extractor", factory=BackboneSpec)
    model: PatchCoreConfig = setting(help="the scoring model", factory=PatchCoreConfig)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)


@dataclass(frozen=True)
class BandRun:
    """`band` runs: the band detector alone, no backbone."""

    model_name: str = setting("band", "the model kind", choices=("band",))
    band: BandConfig = setting(help="the band detector", factory=BandConfig)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)


@dataclass(frozen=True)
class FEClipRun(InputSettings):
    """`feclip` runs: frozen CLIP + frequency adapters (hdmap/models/feclip/)."""

    model_name: str = setting("feclip", "the model kind", choices=("feclip",))
    feclip: FEClipConfig = setting(help="CLIP and its adapters", factory=FEClipConfig)
    train: FEClipTrainSettings = setting(help="how the adapters are trained", factory=FEClipTrainSettings)
    fewshot: FewShotSettings = setting(help="variant 2's few-shot memory", factory=FewShotSettings)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)


Run = PatchCoreRun | BandRun | FEClipRun  # the typed settings of one run, whatever its kind
