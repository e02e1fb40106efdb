"""Read HDMAP TIFF maps and discover the `domain_X/{train/good,test/good,test/fault}` layout."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from hdmap.condition_names import UNKNOWN
from hdmap.data.conditions import check_csv_coverage, half_split_conditions, load_condition_csv
from hdmap.data.errors import HDMAPFileError, HDMAPLayoutError

IMAGE_SUFFIXES = (".tif", ".tiff")
LABEL_GOOD, LABEL_FAULT = 0, 1


@dataclass(frozen=True)
class MapItem:
    """One map on disk with what is known about it (no pixels: read them with `read_map`)."""

    path: str
    label: int  # 0 good, 1 fault
    condition: str  # cold / warm / unknown
    index: int  # file index from the six-digit name
    subset: str  # train/good, test/good or test/fault
    condition_source: str = "file-index rule"  # or "condition CSV", "checkpoint record", "none (train)"


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime_ns, ctime_ns, inode) -> SHA-256 of the file's bytes


def content_digest(path: str | Path) -> str:
    """SHA-256 of a map file's bytes, computed once per file version in a process (a version: size, mtime, ctime
    and inode; `cp -p`, `rsync -a` or tar restore mtime, but never ctime, so a rewritten file is read again)."""
    stat = os.stat(path)
    version = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if version not in _DIGESTS:
        _DIGESTS[version] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _DIGESTS[version]


def read_map(path: str | Path) -> np.ndarray:
    """Read one 2-D map as float32, values untouched (never clipped, never rescaled)."""
    return read_map_and_dtype(path)[0]


def read_map_and_dtype(path: str | Path) -> tuple[np.ndarray, np.dtype]:
    """(the map as float32, the dtype stored in the file)."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            array = tif.pages[0].asarray() if pages else None
    except Exception as error:  # tifffile raises many kinds
        raise HDMAPFileError(f"{path}: cannot be read as TIFF ({type(error).__name__}: {error})") from error
    if pages != 1:
        raise HDMAPFileError(f"{path}: holds {pages} pages (images); an HDMAP map is one 2-D page")
    array = np.asarray(array)
    if np.iscomplexobj(array):
        raise HDMAPFileError(f"{path}: complex values ({array.dtype}); a map holds real energies (save the "
                             f"magnitude or the real part as float32)")
    if array.size == 0:
        raise HDMAPFileError(f"{path}: the map is empty (shape {array.shape})")
    if array.ndim == 3 and 1 in array.shape:
        array = array.squeeze()
    if array.ndim != 2:
        raise HDMAPFileError(f"{path}: expected a 2-D map, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise HDMAPFileError(f"{path}: non-numeric dtype {array.dtype}")
    stored = array.dtype
    array = array.astype(np.float32, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise HDMAPFileError(f"{path}: holds {int(bad.sum())} NaN/inf values")
    return array, stored


def is_integer(dtype) -> bool:
    """Whether a map is stored as integers (or booleans) rather than floats."""
    return bool(np.issubdtype(dtype, np.integer) or dtype == np.bool_)


def check_dtypes(paths: list, dtypes: list) -> str | None:
    """The dtype rule: maps are floats. An integer map among float maps is an error naming it (it would enter
    the model on another scale); an all-integer set is read as float32 values unchanged, with a note (returned)."""
    integer = [is_integer(d) for d in dtypes]
    if all(integer):
        return (f"every map is stored as an integer type ({sorted({str(d) for d in dtypes})}): read as float32 "
                f"values unchanged (HDMAP maps are normally float32)")
    if any(integer):
        odd = next(i for i, flag in enumerate(integer) if flag)
        floats = sorted({str(d) for d, flag in zip(dtypes, integer) if not flag})
        raise HDMAPFileError(f"{paths[odd]}: integer map ({dtypes[odd]}) among float maps ({', '.join(floats)}): "
                             f"convert it to float32 or remove it")
    return None


def list_maps(folder: Path, ignore_other_files: bool = False) -> list[Path]:
    """All .tif/.tiff files of a folder, sorted by name; an error if the folder is missing or empty, and if it
    holds anything else (named), unless `ignore_other_files` (then a printed note says how many were skipped)."""
    if not folder.is_dir():
        raise HDMAPLayoutError(f"HDMAP folder not found: {folder}")
    entries = sorted(folder.iterdir())
    is_map = [p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in entries]
    files = [p for p, flag in zip(entries, is_map) if flag]
    others = [p for p, flag in zip(entries, is_map) if not flag]  # one pass: 100,000 maps are not 10^10 comparisons
    if others and not ignore_other_files:
        raise HDMAPLayoutError(f"{others[0]}: not a .tif/.tiff map in a data folder ({len(others)} such entries in "
                               f"{folder}); remove them or pass --ignore-other-files")
    if others:
        print(f"[hdmap] {folder}: skipped {len(others)} entries that are not .tif/.tiff maps "
              f"(--ignore-other-files), e.g. {others[0].name}", file=sys.stderr)
    if not files:
        raise HDMAPLayoutError(f"no .tif/.tiff maps in {folder}")
    return files


def file_index(path: Path) -> int:
    """The integer index in a file name like 000123.tiff: ASCII digits only (Python's int() also takes
    '0_0_0', ' 7' and non-ASCII digits)."""
    if not (path.stem.isascii() and path.stem.isdigit()):
        raise HDMAPFileError(f"{path}: file name is not a numeric index like 000123.tiff")
    return int(path.stem)


def check_unique_indices(files: list[Path], indices: list[int]) -> None:
    """No two names for one index in a folder (1.tiff beside 000001.tiff)."""
    seen: dict[int, Path] = {}
    for path, index in zip(files, indices):
        if index in seen:
            raise HDMAPFileError(f"{path}: index {index} is also {seen[index].name}: one file per index")
        seen[index] = path


def check_unique_files(paths: list[str]) -> None:
    """No file under two names anywhere in a domain (a hard or symbolic link): it would count twice, or be a test
    map and a reference at once."""
    identities: dict[tuple[int, int], str] = {}
    for path in paths:
        stat = os.stat(path)
        identity = (stat.st_dev, stat.st_ino)
        if identity in identities:
            raise HDMAPFileError(f"{path}: the same file as {identities[identity]} (a link): each map once")
        identities[identity] = path


def path_tail(path: str | Path) -> str:
    """The last three parts of a map's path (e.g. test/good/000001.tiff): its name inside a domain folder."""
    return "/".join(Path(path).parts[-3:])


def discover_domain(root: str | Path, domain: str, condition_csv: str | Path | None = None,
                    condition_overrides: dict[str, str] | None = None, condition_csv_partial: bool = False,
                    ignore_other_files: bool = False) -> dict[str, list[MapItem]]:
    """Items of `ROOT/domain_X`: {'train': [...], 'test': [...]} with labels and conditions.

    Conditions come from the file-index rule, overridden by a `path,condition` CSV and/or by `condition_overrides`
    ({path_tail: condition}, e.g. what a checkpoint recorded). A CSV row for a file of another domain is an error
    naming its line; a CSV must cover every test map unless `condition_csv_partial` (the file-index rule for the
    rest)."""
    domain_dir = Path(root) / f"domain_{domain}"
    if not domain_dir.is_dir():
        raise HDMAPLayoutError(f"domain folder not found: {domain_dir}")
    by_path = load_condition_csv(condition_csv, root, domain) if condition_csv else {}
    by_tail = dict(condition_overrides or {})
    resolved: set[str] = set()  # every map of the domain, as the CSV names them

    def items(subset: str, label: int, conditions_of, default_source: str) -> list[MapItem]:
        files = list_maps(domain_dir / subset, ignore_other_files)
        indices = [file_index(p) for p in files]
        check_unique_indices(files, indices)
        out = []
        for path, index, condition in zip(files, indices, conditions_of(indices)):
            source, key = default_source, str(path.resolve())
            resolved.add(key)
            if key in by_path:
                condition, source = by_path[key][0], "condition CSV"
            elif path_tail(path) in by_tail:
                condition, source = by_tail[path_tail(path)], "checkpoint record"
            out.append(MapItem(str(path), label, condition, index, subset, source))
        return out

    train = items("train/good", LABEL_GOOD, lambda idx: [UNKNOWN] * len(idx), "none (train)")
    test = (items("test/good", LABEL_GOOD, half_split_conditions, "file-index rule")
            + items("test/fault", LABEL_FAULT, half_split_conditions, "file-index rule"))
    check_unique_files([item.path for item in train + test])
    if by_path:
        check_csv_coverage(condition_csv, by_path, resolved, test, condition_csv_partial)
    return {"train": train, "test": test}


def condition_record(items: list[MapItem]) -> dict[str, str]:
    """{path_tail: condition} of every item: enough to rebuild the conditions a run used, wherever the data moved."""
    return {path_tail(item.path): item.condition for item in items}
