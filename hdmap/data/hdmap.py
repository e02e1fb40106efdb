"""Read HDMAP TIFF maps and discover the `domain_X/{train/good,test/good,test/fault}` layout."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

IMAGE_SUFFIXES = (".tif", ".tiff")
CONDITIONS = ("cold", "warm")
UNKNOWN = "unknown"
LABEL_GOOD, LABEL_FAULT = 0, 1


class HDMAPFileError(ValueError):
    """A map file that cannot be used; the message names the file and the problem."""


class HDMAPLayoutError(FileNotFoundError):
    """A folder of the HDMAP layout that is missing or holds no maps."""


@dataclass(frozen=True)
class MapItem:
    """One map on disk with what is known about it (no pixels: read them with `read_map`)."""

    path: str
    label: int  # 0 good, 1 fault
    condition: str  # cold / warm / unknown
    index: int  # file index from the six-digit name
    subset: str  # train/good, test/good or test/fault


def read_map(path: str | Path) -> np.ndarray:
    """Read one 2-D map as float32, values untouched (never clipped, never rescaled)."""
    path = Path(path)
    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many kinds
        raise HDMAPFileError(f"{path}: cannot be read as TIFF ({type(error).__name__}: {error})") from error
    array = np.asarray(array)
    if array.ndim == 3 and 1 in array.shape:
        array = array.squeeze()
    if array.ndim != 2:
        raise HDMAPFileError(f"{path}: expected a 2-D map, got shape {array.shape}")
    if array.size == 0:
        raise HDMAPFileError(f"{path}: the map is empty (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.number):
        raise HDMAPFileError(f"{path}: non-numeric dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise HDMAPFileError(f"{path}: holds {int(bad.sum())} NaN/inf values")
    return array


def list_maps(folder: Path) -> list[Path]:
    """All .tif/.tiff files of a folder, sorted by name; an error if the folder is missing or empty."""
    if not folder.is_dir():
        raise HDMAPLayoutError(f"HDMAP folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise HDMAPLayoutError(f"no .tif/.tiff maps in {folder}")
    return files


def file_index(path: Path) -> int:
    """The integer index in a file name like 000123.tiff."""
    try:
        return int(path.stem)
    except ValueError as error:
        raise HDMAPFileError(f"{path}: file name is not a numeric index like 000123.tiff") from error


def half_split_conditions(indices: list[int]) -> list[str]:
    """The default test rule: the lower half of the file indices is cold, the upper half warm."""
    order = np.argsort(indices, kind="stable")
    conditions = [UNKNOWN] * len(indices)
    half = len(indices) // 2
    for rank, position in enumerate(order):
        conditions[position] = "cold" if rank < half else "warm"
    return conditions


def load_condition_csv(path: str | Path) -> dict[str, str]:
    """Read a `path,condition` CSV; paths are resolved so they match discovered items."""
    path = Path(path)
    overrides: dict[str, str] = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "condition"} <= set(reader.fieldnames):
            raise HDMAPFileError(f"{path}: condition CSV needs the columns 'path,condition'")
        for line, row in enumerate(reader, start=2):
            condition = row["condition"].strip().lower()
            if condition not in (*CONDITIONS, UNKNOWN):
                raise HDMAPFileError(f"{path}:{line}: condition must be cold, warm or unknown, got {row['condition']!r}")
            map_path = Path(row["path"].strip())
            if not map_path.is_absolute():
                map_path = path.parent / map_path
            overrides[str(map_path.resolve())] = condition
    return overrides


def path_tail(path: str | Path) -> str:
    """The last three parts of a map's path (e.g. test/good/000001.tiff): its name inside a domain folder."""
    return "/".join(Path(path).parts[-3:])


def discover_domain(root: str | Path, domain: str, condition_csv: str | Path | None = None,
                    condition_overrides: dict[str, str] | None = None) -> dict[str, list[MapItem]]:
    """Items of `ROOT/domain_X`: {'train': [...], 'test': [...]} with labels and conditions.

    Conditions come from the file-index rule, overridden by a `path,condition` CSV and/or by `condition_overrides`
    ({path_tail: condition}, e.g. what a checkpoint recorded)."""
    domain_dir = Path(root) / f"domain_{domain}"
    if not domain_dir.is_dir():
        raise HDMAPLayoutError(f"domain folder not found: {domain_dir}")
    by_path = load_condition_csv(condition_csv) if condition_csv else {}
    by_tail = dict(condition_overrides or {})

    def items(subset: str, label: int, conditions_of) -> list[MapItem]:
        files = list_maps(domain_dir / subset)
        indices = [file_index(p) for p in files]
        conditions = conditions_of(indices)
        out = []
        for path, index, condition in zip(files, indices, conditions):
            condition = by_path.get(str(path.resolve()), by_tail.get(path_tail(path), condition))
            out.append(MapItem(str(path), label, condition, index, subset))
        return out

    train = items("train/good", LABEL_GOOD, lambda idx: [UNKNOWN] * len(idx))
    test = items("test/good", LABEL_GOOD, half_split_conditions) + items("test/fault", LABEL_FAULT, half_split_conditions)
    return {"train": train, "test": test}


def condition_record(items: list[MapItem]) -> dict[str, str]:
    """{path_tail: condition} of every item: enough to rebuild the conditions a run used, wherever the data moved."""
    return {path_tail(item.path): item.condition for item in items}


def read_maps(items: list[MapItem]) -> list[np.ndarray]:
    """Pixels of many items (maps may differ in size)."""
    return [read_map(item.path) for item in items]
