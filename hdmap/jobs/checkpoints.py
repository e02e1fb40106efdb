"""Trial and run checkpoints: a Lightning-loadable model.ckpt that is the complete record of a fit: run config,
model kind, data root, the split itself, the conditions of every map (so a condition CSV need not be passed
again), content fingerprints of the data and the map size. Reloading checks the data it is applied to."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning import LightningModule

from hdmap.atomic_files import atomic_path, write_text_atomic
from hdmap.config import plain
from hdmap.data.splits import SplitMismatchError, TestSplit
from hdmap.models.checkpoint_files import CheckpointMismatchError, lightning_checkpoint, load_data_only
from hdmap.data.domain import DomainData, load_domain
from hdmap.run.settings import Run

CHECKPOINT_FILE = "model.ckpt"
TRIAL_METRICS_FILE = "trial_metrics.json"



def save_checkpoint(folder: str | Path, module: LightningModule, run: Run, data: DomainData,
                    metrics: dict) -> Path:
    """model.ckpt + config.json + the metrics of the run that wrote it (an independent record for checks); the
    settings are recorded as their plain mapping (`plain(run)`), which `hdmap eval` turns back into the tree."""
    folder = Path(folder)
    config = plain(run)
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"model_name": config["model_name"], "config": config, "domain": data.domain, "data_root": data.root,
             "split": data.split.__dict__, "conditions": data.condition_record(),
             "train_fingerprint": data.fingerprints["train"], "test_fingerprint": data.fingerprints["test"],
             "map_shape": list(data.test_maps.shape[1:]), "tune": metrics["tune"],
             "allow_duplicates": any(note.startswith("--allow-duplicates") for note in data.notes),
             "threads": torch.get_num_threads()}  # CPU sums round by thread count: eval scores with the same
    with atomic_path(folder / CHECKPOINT_FILE) as temporary:
        torch.save(lightning_checkpoint(module, extra), temporary)  # FE-CLIP drops its frozen CLIP
    write_text_atomic(folder / "config.json", json.dumps(config, indent=2))
    write_text_atomic(folder / TRIAL_METRICS_FILE, json.dumps(metrics, indent=2, default=str))
    return folder / CHECKPOINT_FILE


def checkpoint_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The whole checkpoint dict; its `hdmap` record is {} when written without one (FE-CLIP benchmark adapters)."""
    return load_data_only(checkpoint_file(path))



def load_checkpoint_data(extra: dict, data_root: str | None = None, ignore_other_files: bool = False) -> DomainData:
    """The domain a checkpoint was made on, with its own split and conditions (nothing recomputed); data whose test
    files, contents or map size differ from the checkpoint's is refused."""
    root = data_root or extra["data_root"]
    if not Path(root).is_dir():
        raise FileNotFoundError(f"data root of the checkpoint not found: {root} (pass --data-root)")
    try:  # load_domain checks the saved split against the test files
        data = load_domain(root, extra["domain"], split=TestSplit(**extra["split"]),
                           condition_overrides=extra.get("conditions"), ignore_other_files=ignore_other_files,
                           allow_duplicates=bool(extra.get("allow_duplicates")))
    except SplitMismatchError as error:
        raise CheckpointMismatchError(f"test files under {root} differ from the checkpoint's: {error}") from error
    for subset in ("train", "test"):
        if extra[f"{subset}_fingerprint"] != data.fingerprints[subset]:
            raise CheckpointMismatchError(f"the {subset} maps under {data.root}/domain_{data.domain} differ in content "
                                          f"from those the checkpoint was made with")
    if list(data.test_maps.shape[1:]) != extra["map_shape"]:
        raise CheckpointMismatchError(f"map size {list(data.test_maps.shape[1:])} differs from the checkpoint's "
                                      f"{extra['map_shape']}")
    return data


def find_checkpoint(run: Path, trial: str | None) -> Path:
    """The checkpoint a RUN argument names: a file, a run folder, or a search's best (or given) trial."""
    if run.is_file():
        return run
    if (run / CHECKPOINT_FILE).is_file() and trial is None:
        return run / CHECKPOINT_FILE
    if trial is not None:
        matches = sorted(run.glob(f"*{trial}*/checkpoint_*/{CHECKPOINT_FILE}"))
        if not matches:
            raise FileNotFoundError(f"no checkpoint for trial {trial!r} under {run}")
        return matches[-1]
    summary_file = run / "summary.json"
    if not summary_file.exists():
        raise FileNotFoundError(f"{run}: neither a checkpoint, a run folder with {CHECKPOINT_FILE}, nor a finished "
                                f"search with summary.json (or pass --trial)")
    try:
        best = json.loads(summary_file.read_text())["best"]
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{summary_file}: not a summary.json hdmap wrote ({type(error).__name__}: {error}); pass "
                         f"--trial ID, or rerun `hdmap tune --resume` to write it again") from None
    if not best:
        raise ValueError(f"{run}: the search has no finished trial")
    return Path(best["checkpoint"])
