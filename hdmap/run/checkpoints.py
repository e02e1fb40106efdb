"""Trial checkpoints: a Lightning-loadable model.ckpt with the run config, the split and a data fingerprint;
reloading checks that the data it is applied to is the data it was made on."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from hdmap.data.splits import SplitMismatchError, TestSplit
from hdmap.models.lightning_checkpoint import lightning_checkpoint
from hdmap.models.lightning_patchcore import GatedPatchCore
from hdmap.run.domain_data import DomainData

CHECKPOINT_FILE = "model.ckpt"


class CheckpointMismatchError(ValueError):
    """A checkpoint applied to data or settings it was not made for."""


def data_fingerprint(items) -> str:
    """Hash of the file names and contents (not their location: a moved data root still matches)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(Path(item.path).name.encode())
        digest.update(Path(item.path).read_bytes())
    return digest.hexdigest()[:16]


def save_checkpoint(folder: str | Path, module: GatedPatchCore, config: dict, data: DomainData,
                    metrics: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"config": config, "domain": data.domain, "data_root": data.root, "split": data.split.__dict__,
             "train_fingerprint": data_fingerprint(data.train),
             "test_fingerprint": data_fingerprint(data.test), "map_shape": list(data.test_maps.shape[1:]),
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
    names = [Path(p).name for p in split.paths]
    here = [Path(i.path).name for i in data.test]
    if data.domain != extra["domain"]:
        raise CheckpointMismatchError(f"checkpoint was fitted on domain {extra['domain']}, not {data.domain}")
    if names != here or split.tune != data.split.tune:
        raise CheckpointMismatchError(
            f"the test files or split under {data.root} do not match the checkpoint's "
            f"({len(names)} files / {len(split.tune)} tune in the checkpoint, {len(here)} / {len(data.split.tune)} here)")
    for subset, items in (("train", data.train), ("test", data.test)):
        if extra[f"{subset}_fingerprint"] != data_fingerprint(items):
            raise CheckpointMismatchError(f"the {subset} maps under {data.root}/domain_{data.domain} differ in content "
                                          f"from those the checkpoint was made with")
    if list(data.test_maps.shape[1:]) != extra["map_shape"]:
        raise CheckpointMismatchError(f"map size {list(data.test_maps.shape[1:])} differs from the checkpoint's "
                                      f"{extra['map_shape']}")


__all__ = ["CheckpointMismatchError", "SplitMismatchError", "check_data", "load_checkpoint", "save_checkpoint"]
