"""Trial checkpoints: a Lightning-loadable model.ckpt with the run config, the split and a data fingerprint;
reloading checks that the data it is applied to is the data it was made on."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning import LightningModule

from hdmap.data.splits import SplitMismatchError, TestSplit
from hdmap.models.lightning_checkpoint import lightning_checkpoint
from hdmap.models.lightning_patchcore import GatedPatchCore
from hdmap.run.domain_data import DomainData

CHECKPOINT_FILE = "model.ckpt"


class CheckpointMismatchError(ValueError):
    """A checkpoint applied to data or settings it was not made for."""


def save_checkpoint(folder: str | Path, module: LightningModule, config: dict, data: DomainData,
                    metrics: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"config": config, "domain": data.domain, "data_root": data.root, "split": data.split.__dict__,
             "train_fingerprint": data.fingerprints["train"],
             "test_fingerprint": data.fingerprints["test"], "map_shape": list(data.test_maps.shape[1:]),
             "tune": metrics["tune"]}
    torch.save(lightning_checkpoint(module, extra), folder / CHECKPOINT_FILE)  # FE-CLIP drops its frozen CLIP
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder / CHECKPOINT_FILE


def read_extra(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["hdmap"]


def load_checkpoint(path: str | Path):
    """(module, extra); FE-CLIP checkpoints come back as (None, extra): they are rebuilt by their pipeline."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    extra = read_extra(path)
    if extra["config"]["model_name"] == "feclip":
        return None, extra
    return GatedPatchCore.load_from_checkpoint(path, map_location="cpu"), extra


def check_data(extra: dict, data: DomainData) -> None:
    """Refuse data whose test files, split, train set or map size differ from the checkpoint's."""
    split = TestSplit(**extra["split"])
    if data.domain != extra["domain"]:
        raise CheckpointMismatchError(f"checkpoint was fitted on domain {extra['domain']}, not {data.domain}")
    try:
        split.check_matches([i.path for i in data.test])
    except SplitMismatchError as error:
        raise CheckpointMismatchError(f"test files under {data.root} differ from the checkpoint's: {error}") from error
    if split.tune != data.split.tune:
        raise CheckpointMismatchError(f"the tune split of {data.root} ({len(data.split.tune)} maps) differs from the "
                                      f"checkpoint's ({len(split.tune)} maps)")
    for subset in ("train", "test"):
        if extra[f"{subset}_fingerprint"] != data.fingerprints[subset]:
            raise CheckpointMismatchError(f"the {subset} maps under {data.root}/domain_{data.domain} differ in content "
                                          f"from those the checkpoint was made with")
    if list(data.test_maps.shape[1:]) != extra["map_shape"]:
        raise CheckpointMismatchError(f"map size {list(data.test_maps.shape[1:])} differs from the checkpoint's "
                                      f"{extra['map_shape']}")

