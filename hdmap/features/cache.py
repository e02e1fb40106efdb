"""Features computed once per (backbone, weights, taps, transform, files) key, stored fp16 on disk, memory-mapped.

Layout: CACHE/<key>/tap<i>.npy (N, C, h, w) float16 + meta.json (with each file's size and CRC-32, checked on
every read: a corrupt or truncated entry is recomputed with a warning). Writers hold an exclusive lock on
CACHE/<key>.lock, so parallel workers (Ray trials) compute a key once and the others wait and then read.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hdmap.data.condition_statistics import ConditionStatistics
from hdmap.data.errors import HDMAPFileError
from hdmap.data.map_files import read_map
from hdmap.data.transforms import MapTransform
from hdmap.features.backbones import Backbone, BackboneSpec, build_backbone


_BACKBONES: dict[tuple[str, str], Backbone] = {}  # per process: Tune workers reused across trials keep them


def default_cache_dir() -> Path:
    return Path(os.environ.get("HDMAP_CACHE", Path.home() / ".cache" / "hdmap" / "features"))


def file_fingerprint(paths: list[str]) -> list[tuple[str, int, int]]:
    """(resolved path, size, mtime_ns) per file: any edit to a file changes the key."""
    out = []
    for path in paths:
        stat = Path(path).stat()
        out.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return out


def file_checksum(path: Path) -> str:
    """Size and CRC-32 of a file's bytes: written with every cache entry, checked whenever it is read."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"{path.stat().st_size}:{crc:08x}"


def normalising(preparation: ConditionStatistics | None) -> ConditionStatistics | None:
    """The input preparation when it changes the maps the backbone sees, else None."""
    return preparation if preparation is not None and preparation.changes_inputs else None


def cache_key(spec: BackboneSpec, transform: MapTransform, paths: list[str],
              preparation: ConditionStatistics | None = None) -> str:
    identity = {"backbone": spec.cache_identity(), "transform": asdict(transform), "files": file_fingerprint(paths)}
    if normalising(preparation) is not None:  # maps normalised before the backbone: how, and the train statistics
        identity["prepare"] = preparation.identity()
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode()).hexdigest()[:24]


class FeatureCache:
    """Get-or-compute tapped feature grids for a list of map files."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True, batch_size: int = 32,
                 device: str | None = None, progress: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        self.hits = self.misses = 0

    def backbone(self, spec: BackboneSpec, device: str | torch.device | None = None) -> Backbone:
        """The backbone of `spec` on `device` (default: this cache's), built once per process and device."""
        device = str(device or self.device)
        key = (json.dumps(spec.cache_identity(), sort_keys=True), device)
        if key not in _BACKBONES:
            _BACKBONES[key] = build_backbone(spec).to(device)
        return _BACKBONES[key]

    def transform_for(self, spec: BackboneSpec, image_size: int, resize: str, normalisation: str,
                      device: str | torch.device | None = None) -> MapTransform:
        """The transform whose size multiple and normalisation match the backbone."""
        backbone = self.backbone(spec, device)
        return MapTransform(image_size, resize, normalisation, backbone.stride, backbone.mean_std)

    def features(self, spec: BackboneSpec, transform: MapTransform, paths: list[str],
                 preparation: ConditionStatistics | None = None,
                 device: str | torch.device | None = None) -> list[np.ndarray]:
        """One array (N, C, h, w) per tap, in the order of `paths`; float16 memory-maps when cached.
        `preparation` (the run's condition statistics, fitted on train) normalises each map before the backbone
        when its input_norm says so. The backbone runs on `device` (the pipeline passes its Trainer's)."""
        prepare = normalising(preparation)
        device = str(device or self.device)
        if not self.enabled:
            self.misses += 1
            return [a.astype(np.float16) for a in self._extract(spec, transform, paths, prepare, device)]
        key = cache_key(spec, transform, paths, prepare)
        folder = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                arrays = self._read_checked(folder) if (folder / "meta.json").exists() else None
                if arrays is None:
                    self.misses += 1
                    self._write(folder, spec, transform, paths, prepare, device)
                    arrays = self._read_checked(folder)
                else:
                    self.hits += 1
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return arrays

    def _read_checked(self, folder: Path) -> list[np.ndarray] | None:
        """The entry's arrays if every file matches the checksum written with it; else None, with a warning
        naming the entry (it is then recomputed, never used)."""
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if "checksums" not in meta:
                raise ValueError("no checksums: written by an older hdmap")
            files = [folder / f"tap{i}.npy" for i in range(meta["n_taps"])]
            if [file_checksum(f) for f in files] != meta["checksums"]:
                raise ValueError("checksum mismatch")
            return [np.load(f, mmap_mode="r") for f in files]
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            warnings.warn(f"feature cache entry {folder} is corrupt or incomplete ({error}): recomputing it")
            return None

    def _write(self, folder: Path, spec, transform, paths, prepare, device: str) -> None:
        arrays = self._extract(spec, transform, paths, prepare, device)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for i, array in enumerate(arrays):
            np.save(partial / f"tap{i}.npy", array.astype(np.float16))
        meta = {"backbone": spec.cache_identity(), "transform": asdict(transform), "n_files": len(paths),
                "prepare": prepare.identity() if prepare is not None else None,
                "n_taps": len(arrays), "shapes": [list(a.shape) for a in arrays],
                "checksums": [file_checksum(partial / f"tap{i}.npy") for i in range(len(arrays))]}
        (partial / "meta.json").write_text(json.dumps(meta, default=list))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)

    def _extract(self, spec, transform, paths, prepare, device: str) -> list[np.ndarray]:
        from rich.progress import Progress

        backbone = self.backbone(spec, device)
        outputs: list[list[np.ndarray]] = [[] for _ in spec.taps]
        first_shape = None
        with Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task(f"features {spec.name}", total=len(paths))
            for start in range(0, len(paths), self.batch_size):
                chunk = paths[start:start + self.batch_size]
                maps = [read_map(p) for p in chunk]
                for path, array in zip(chunk, maps):
                    first_shape = first_shape or array.shape
                    if array.shape != first_shape:
                        raise HDMAPFileError(f"{path}: shape {array.shape} differs from {first_shape} of the other maps")
                if prepare is not None:
                    maps = list(prepare.normalise(torch.from_numpy(np.stack(maps))).numpy())
                x = transform.batch(maps).to(device)
                for tap, grid in enumerate(backbone(x)):
                    outputs[tap].append(grid.float().cpu().numpy())
                bar.advance(task, len(chunk))
        return [np.concatenate(o) for o in outputs]
