"""Features computed once per (backbone, weights, transform, condition statistics, files' contents) key, one array
per tap, stored fp16 on disk, memory-mapped. The key leaves the tap set out: every tap of a key comes from the same
input, so tap sets share an entry, and a pass can also extract the taps a search may ask for later (`prefetch_taps`).

Layout: CACHE/<key>/tap<t>.npy (N, C, h, w) float16 for backbone tap t + meta.json (each file's size and CRC-32,
checked once per file version and process: a corrupt or truncated tap is recomputed with a warning). Readers share
CACHE/<key>.lock; a writer holds it alone (hdmap/file_lock.py: a heartbeat, and a named error instead of a hang when a
holder died), so parallel workers (Ray trials) compute a tap once and the others wait and then read. Files are
written under names unique to their writer and renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from hdmap.atomic_files import unique_partial, write_text_atomic
from hdmap.data.condition_statistics import ConditionStatistics
from hdmap.data.errors import HDMAPFileError
from hdmap.data.map_files import content_digest, read_map
from hdmap.data.transforms import MapTransform
from hdmap.features.backbones import Backbone, BackboneSpec, build_backbone
from hdmap.features.cache_admin import evict_over_cap, touch
from hdmap.features.npy_stream import reserved_npy
from hdmap.file_lock import locked
from hdmap.progress import StageProgress
from hdmap.spread import active, node_id, task_device


_BACKBONES: dict[tuple[str, str], Backbone] = {}  # per process: Tune workers reused across trials keep them
_MODELS: dict[tuple[str, str], tuple[str, str]] = {}  # (identity without taps, device) -> first _BACKBONES key
_GEOMETRY: dict[str, tuple[int, tuple]] = {}  # backbone identity -> (stride, mean_std), per process
_VERIFIED: set[tuple[str, int, int, str]] = set()  # (file, size, mtime_ns, checksum) this process has checked


def default_cache_dir() -> Path:
    """$HDMAP_CACHE, or ~/.cache/hdmap/features when it is unset or empty (an empty value is not the current
    folder)."""
    return Path(os.environ.get("HDMAP_CACHE") or Path.home() / ".cache" / "hdmap" / "features")


def file_fingerprint(paths: list[str]) -> list[str]:
    """The content digest of each file, in order: the features depend on the maps' bytes, not on their names or
    time stamps (a map rewritten with the same size and mtime is a new key; a moved data root is the same)."""
    return [content_digest(path) for path in paths]


def file_checksum(path: Path) -> str:
    """Size and CRC-32 of a file's bytes: written with every cache entry, checked whenever it is read."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"{path.stat().st_size}:{crc:08x}"


def normalising(condition_stats: ConditionStatistics | None) -> ConditionStatistics | None:
    """The condition statistics when they change the maps the backbone sees, else None."""
    return condition_stats if condition_stats is not None and condition_stats.changes_inputs else None


def entry_backbone(spec: BackboneSpec) -> dict:
    """What an entry depends on of the backbone: all but the taps (every tap of an entry shares its input)."""
    return {k: v for k, v in spec.cache_identity().items() if k != "taps"}


def cache_key(spec: BackboneSpec, transform: MapTransform, paths: list[str],
              condition_stats: ConditionStatistics | None = None) -> str:
    identity = {"version": 2, "backbone": entry_backbone(spec), "transform": asdict(transform),
                "files": file_fingerprint(paths)}  # version 2: files by content
    if normalising(condition_stats) is not None:  # maps normalised before the backbone: how, and the train statistics
        identity["prepare"] = condition_stats.identity()  # the key name is part of every cache key: kept
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode()).hexdigest()[:24]


class FeatureCache:
    """Get-or-compute tapped feature grids for a list of map files."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True, batch_size: int = 32,
                 device: str | None = None, progress: bool = True, prefetch_taps: tuple[int, ...] = ()):
        """`prefetch_taps`: taps a pass also extracts when it runs (a search passes every tap its space can ask
        for), where they come from the same input as the requested ones."""
        self.root = Path(root) if root else default_cache_dir()
        self.prefetch_taps = tuple(prefetch_taps)
        self.enabled = enabled
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        self.hits = self.misses = 0

    def backbone(self, spec: BackboneSpec, device: str | torch.device | None = None) -> Backbone:
        """The backbone of `spec` on `device` (default: this cache's), built once per process and device; its tap
        sets share one model (a tap set is a view of the model, not a copy of it)."""
        device = str(device or self.device)
        key = (json.dumps(spec.cache_identity(), sort_keys=True), device)
        if key not in _BACKBONES:
            model_key = (json.dumps(entry_backbone(spec), sort_keys=True), device)
            sibling = _BACKBONES.get(_MODELS.get(model_key))
            _BACKBONES[key] = sibling.with_taps(spec.taps) if sibling else build_backbone(spec).to(device)
            _MODELS.setdefault(model_key, key)
        return _BACKBONES[key]

    def geometry(self, spec: BackboneSpec, device: str | torch.device | None = None) -> tuple[int, tuple]:
        """(stride, mean_std) of the backbone of `spec`: recorded in CACHE/backbones/ the first time it is built, so
        a process whose features are all cached never builds (or loads the weights of) the backbone."""
        identity = json.dumps(spec.cache_identity(), sort_keys=True)
        record = self.root / "backbones" / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}.json"
        geometry = _GEOMETRY.get(identity)
        if geometry is None:
            try:
                saved = json.loads(record.read_text())
                geometry = (int(saved["stride"]), tuple(tuple(float(v) for v in part) for part in saved["mean_std"]))
            except (OSError, ValueError, KeyError, TypeError):
                backbone = self.backbone(spec, device)
                geometry = (int(backbone.stride), tuple(tuple(float(v) for v in part) for part in backbone.mean_std))
            _GEOMETRY[identity] = geometry
        if self.enabled and not record.exists():
            record.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(record, json.dumps({"spec": json.loads(identity), "stride": geometry[0],
                                                  "mean_std": geometry[1]}))
        return geometry

    def transform_for(self, spec: BackboneSpec, image_size: int, resize: str, normalisation: str,
                      device: str | torch.device | None = None) -> MapTransform:
        """The transform whose size multiple and normalisation match the backbone."""
        stride, mean_std = self.geometry(spec, device)
        return MapTransform(image_size, resize, normalisation, stride, mean_std)

    def features(self, spec: BackboneSpec, transform: MapTransform, paths: list[str],
                 condition_stats: ConditionStatistics | None = None,
                 device: str | torch.device | None = None) -> list[np.ndarray]:
        """One array (N, C, h, w) per tap, in the order of `paths`; float16 memory-maps when cached.
        `condition_stats` (the run's condition statistics, fitted on train) normalises each map before the backbone
        when its input_norm says so. The backbone runs on `device` (the pipeline passes its Trainer's)."""
        condition_stats = normalising(condition_stats)
        device = str(device or self.device)
        if not self.enabled:
            self.misses += 1
            return self._extract(spec, transform, paths, condition_stats, device)
        key = cache_key(spec, transform, paths, condition_stats)
        folder = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / f"{key}.lock"
        with locked(lock, shared=True):  # the common case, a hit: readers do not wait for each other
            recorded = self._recorded_taps(folder, quiet=True)
            hit = all(self._intact(folder, t, recorded, quiet=True) for t in spec.taps)
        if hit:
            self.hits += 1
            touch(folder)
        else:
            with locked(lock):
                recorded = self._recorded_taps(folder)
                missing = [t for t in spec.taps if not self._intact(folder, t, recorded)]
                if missing:
                    self.misses += 1
                    extract = sorted(set(missing) | (self._prefetchable(spec, device) - set(recorded)))
                    recorded = {t: c for t, c in recorded.items() if t not in extract}
                    self._write(folder, replace(spec, taps=tuple(extract)), transform, paths, condition_stats, device,
                                recorded)
                    evict_over_cap(self.root, keep=key)
                else:
                    self.hits += 1  # another worker wrote it while this one waited
        return [np.load(folder / f"tap{t}.npy", mmap_mode="r") for t in spec.taps]

    def _prefetchable(self, spec: BackboneSpec, device: str) -> set[int]:
        """The prefetch taps that share the requested taps' input: same stride, so the same transform (a ViT's
        patch size; CNN taps of another stride give another input size and key)."""
        if not self.prefetch_taps or set(self.prefetch_taps) <= set(spec.taps):
            return set()
        union = replace(spec, taps=tuple(sorted(set(spec.taps) | set(self.prefetch_taps))))
        same_input = self.geometry(union, device)[0] == self.geometry(spec, device)[0]
        return set(self.prefetch_taps) if same_input else set()

    @staticmethod
    def _recorded_taps(folder: Path, quiet: bool = False) -> dict[int, str]:
        """{tap: checksum} that the entry's meta.json records ({} when there is no readable entry). `quiet`: the
        readers' first look; the writer's second look under the exclusive lock warns."""
        if not (folder / "meta.json").exists():
            return {}
        try:
            return {int(t): c for t, c in json.loads((folder / "meta.json").read_text())["taps"].items()}
        except (OSError, ValueError, KeyError, AttributeError) as error:
            if not quiet:
                warnings.warn(f"feature cache entry {folder} is corrupt or incomplete ({error}): recomputing it")
            return {}

    @staticmethod
    def _intact(folder: Path, tap: int, recorded: dict[int, str], quiet: bool = False) -> bool:
        """Does the tap's file match the checksum written with it? Checked once per file version (size, mtime) and
        process. A file that does not is recomputed, never used, with a warning naming it."""
        if tap not in recorded:
            return False
        file = folder / f"tap{tap}.npy"
        try:
            stat = file.stat()
            seen = (str(file), stat.st_size, stat.st_mtime_ns, recorded[tap])
            if seen in _VERIFIED:
                return True
            if file_checksum(file) != recorded[tap]:
                raise ValueError("checksum mismatch")
            _VERIFIED.add(seen)
            return True
        except (OSError, ValueError) as error:
            if not quiet:
                warnings.warn(f"feature cache entry {file} is corrupt or incomplete ({error}): recomputing it")
            return False

    def _write(self, folder: Path, spec, transform, paths, condition_stats, device: str, kept: dict[int, str]) -> None:
        """Extract `spec.taps` and add them to the entry beside the taps it keeps (`kept`: {tap: checksum}). Each
        tap is written batch by batch into its file as it is extracted: memory does not grow with the maps."""
        folder.mkdir(parents=True, exist_ok=True)
        checksums = {str(t): c for t, c in kept.items()}
        partials = {tap: unique_partial(folder / f"tap{tap}.npy") for tap in spec.taps}
        try:
            arrays = self._extract(spec, transform, paths, condition_stats, device,
                                   allocate=lambda tap, shape: reserved_npy(partials[tap], shape, np.float16))
            for tap, array in zip(spec.taps, arrays):
                array.flush()
                checksums[str(tap)] = file_checksum(partials[tap])
            del arrays  # the memory maps close before their files are renamed
            for tap in spec.taps:
                target = folder / f"tap{tap}.npy"
                os.replace(partials[tap], target)
                stat = target.stat()
                _VERIFIED.add((str(target), stat.st_size, stat.st_mtime_ns, checksums[str(tap)]))
        except OSError as error:
            raise OSError(f"{folder}: could not write the feature cache entry ({error}); free space on that disk, "
                          f"or point --cache-dir / HDMAP_CACHE elsewhere (--no-cache in a search)") from error
        finally:
            for partial in partials.values():
                partial.unlink(missing_ok=True)  # nothing half-written left behind (a full disk)
        meta = {"backbone": entry_backbone(spec), "transform": asdict(transform), "n_files": len(paths),
                "file_digests": file_fingerprint(paths),  # what the entry was computed from
                "prepare": condition_stats.identity() if condition_stats is not None else None, "taps": checksums}
        write_text_atomic(folder / "meta.json", json.dumps(meta, default=list))

    def _extract(self, spec, transform, paths, condition_stats, device: str, allocate=None) -> list[np.ndarray]:
        """One float16 array (N, C, h, w) per tap, filled batch by batch; `allocate(tap, shape)` makes each (default:
        in memory)."""
        allocate = allocate or (lambda tap, shape: np.empty(shape, np.float16))
        if active() is not None:
            return self._extract_spread(spec, transform, paths, condition_stats, allocate)
        backbone = self.backbone(spec, device)
        outputs: list[np.ndarray] = []
        first_shape = None
        with StageProgress(f"features {spec.name}", len(paths), "maps", enabled=self.progress) as progress:
            for start in range(0, len(paths), self.batch_size):
                chunk = paths[start:start + self.batch_size]
                maps = [read_map(p) for p in chunk]
                for path, array in zip(chunk, maps):
                    first_shape = first_shape or array.shape
                    if array.shape != first_shape:
                        raise HDMAPFileError(f"{path}: shape {array.shape} differs from {first_shape} of the other maps")
                if condition_stats is not None:
                    maps = list(condition_stats.normalise(torch.from_numpy(np.stack(maps))).numpy())
                x = transform.batch(maps).to(device)
                grids = [grid.float().cpu().numpy() for grid in backbone(x)]
                outputs = _place(outputs, grids, start, lambda grid, tap: allocate(tap, (len(paths), *grid.shape[1:])),
                                 spec.taps)
                progress.advance(len(chunk))
        return outputs

    def _extract_spread(self, spec, transform, paths, condition_stats, allocate) -> list[np.ndarray]:
        """_extract as Ray tasks on the cluster (hdmap/spread.py): shards of whole batches, so each map meets the
        backbone in the batch it meets without Ray; the shards' features written in order as they come back."""
        shard = max(1, MAPS_PER_SHARD // self.batch_size) * self.batch_size
        calls = [(spec, transform, paths[start:start + shard], condition_stats, self.batch_size)
                 for start in range(0, len(paths), shard)]
        outputs: list[np.ndarray] = []
        with StageProgress(f"features {spec.name} (Ray)", len(paths), "maps", enabled=self.progress) as progress:
            for (_, _, part, _, _), grids in zip(calls, active().ordered("features", extract_shard, calls)):
                if outputs and any(g.shape[1:] != o.shape[1:] for g, o in zip(grids, outputs)):
                    raise HDMAPFileError(f"{part[0]}: its shard's features {grids[0].shape[1:]} differ from "
                                         f"{outputs[0].shape[1:]} of the first maps (maps of another size?)")
                outputs = _place(outputs, grids, progress.done,
                                 lambda grid, tap: allocate(tap, (len(paths), *grid.shape[1:])), spec.taps)
                progress.advance(len(part))
        return outputs


def _place(outputs: list, grids: list[np.ndarray], start: int, allocate, taps) -> list:
    """Write one batch's grids (a tap each) at row `start` of `outputs`, allocated (`allocate(grid, tap)`) at the
    first batch; float32 -> float16, as np.save of .astype did."""
    outputs = outputs or [allocate(grid, tap) for tap, grid in zip(taps, grids)]
    for output, grid in zip(outputs, grids):
        output[start:start + len(grid)] = grid
    return outputs


MAPS_PER_SHARD = 512  # maps per Ray extraction task (rounded to whole batches)


def extract_shard(spec, transform, paths: list[str], condition_stats, batch_size: int) -> tuple[list, str]:
    """A Ray task: (one float16 array per tap of these maps, the node that computed them)."""
    cache = FeatureCache(enabled=False, batch_size=batch_size, progress=False)
    return cache._extract(spec, transform, paths, condition_stats, task_device()), node_id()

