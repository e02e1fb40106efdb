"""The settings tree of `feclip` runs: CLIP and its adapters (model.py), how the adapters are trained, and variant
2's few-shot memory."""
from __future__ import annotations

from dataclasses import dataclass

from hdmap.gating.gates import GateSettings
from hdmap.kinds.feclip.model import FEClipSettings
from hdmap.run.settings import InputSettings, SplitSettings
from hdmap.setting_rules import setting

FECLIP_TRAIN_SOURCES = ("checkpoint", "hdmap_bands", "none")
TRAIN_PRECISIONS = ("auto", "32", "bf16-mixed")


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
    seed: int = setting(0, "seed of the synthetic bands, batches and few-shot references", low=0)
    precision: str = setting("auto", "training precision: bf16-mixed (autocast: about half the activation memory "
                             "and several times the speed of fp32 on GPUs with bfloat16), 32, or auto (bf16-mixed on "
                             "a CUDA GPU that supports it, else 32)", choices=TRAIN_PRECISIONS)


@dataclass(frozen=True)
class FewShotSettings:
    shots: int = setting(0, "variant 2: references per condition in the few-shot patch memory added to the "
                         "zero-shot map; 0 = zero-shot only", low=0)
    weight: float = setting(1.0, "weight of the few-shot map", low=0)
    gate: GateSettings = setting(help="the gate choosing the condition's memory", factory=GateSettings)
    calibration_maps: int = setting(8, "held-out train normals per condition standardising the few-shot map", low=2)


@dataclass(frozen=True)
class FEClipRun(InputSettings):
    """`feclip` runs: frozen CLIP + frequency adapters (hdmap/kinds/feclip/)."""

    model_name: str = setting("feclip", "the model kind", choices=("feclip",))
    feclip: FEClipSettings = setting(help="CLIP and its adapters", factory=FEClipSettings)
    train: FEClipTrainSettings = setting(help="how the adapters are trained", factory=FEClipTrainSettings)
    fewshot: FewShotSettings = setting(help="variant 2's few-shot memory", factory=FewShotSettings)
    split: SplitSettings = setting(help="the tune/holdout split", factory=SplitSettings)
