"""Cold/warm conditions of test maps: the file-index rule, a `path,condition` CSV (checked row by row and for
coverage), and how many maps took their condition from which source."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hdmap.condition_names import CONDITIONS, UNKNOWN
from hdmap.data.errors import HDMAPFileError



def half_split_conditions(indices: list[int]) -> list[str]:
    """The default test rule: the lower half of the file indices is cold, the upper half warm."""
    order = np.argsort(indices, kind="stable")
    conditions = [UNKNOWN] * len(indices)
    half = len(indices) // 2
    for rank, position in enumerate(order):
        conditions[position] = "cold" if rank < half else "warm"
    return conditions


def load_condition_csv(path: str | Path, root: str | Path, domain: str) -> dict[str, tuple[str, int]]:
    """{resolved map path: (condition, CSV line)} of a `path,condition` CSV. Relative paths are read against the
    data root (`domain_C/test/good/000001.tiff`); paths that start inside the domain folder (`train/...`,
    `test/...`) against ROOT/domain_X. Every row must name an existing map file (else an error naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise HDMAPFileError(f"condition CSV not found: {path}")
    overrides: dict[str, tuple[str, int]] = {}
    try:
        path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise HDMAPFileError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}): save the condition CSV "
                             f"as UTF-8") from None
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's byte-order mark is not a column
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "condition"} <= set(reader.fieldnames):
            raise HDMAPFileError(f"{path}: condition CSV needs the columns 'path,condition'")
        for line, row in enumerate(reader, start=2):
            condition = (row["condition"] or "").strip().lower()
            if condition not in (*CONDITIONS, UNKNOWN):
                raise HDMAPFileError(f"{path}:{line}: condition must be cold, warm or unknown, got {row['condition']!r}")
            map_path = Path((row["path"] or "").strip())
            if not map_path.is_absolute():
                inside_domain = map_path.parts[:1] in (("train",), ("test",))
                map_path = (Path(root) / f"domain_{domain}" if inside_domain else Path(root)) / map_path
            if not map_path.is_file():
                raise HDMAPFileError(f"{path}:{line}: {row['path']!r} matches no map file (looked for {map_path}; "
                                     f"relative paths start at the data root, e.g. domain_{domain}/test/good/000001.tiff)")
            key = str(map_path.resolve())  # the same map spelled two ways is one map
            if key in overrides and overrides[key][0] != condition:
                first_condition, first_line = overrides[key]
                raise HDMAPFileError(f"{path}:{line}: {row['path']!r} is {condition}, but line {first_line} made the "
                                     f"same map {first_condition}: one condition per map")
            overrides.setdefault(key, (condition, line))
    if not overrides:
        raise HDMAPFileError(f"{path}: the condition CSV has its header but no row: name the maps (path,condition) "
                             f"or leave --condition-csv out (the file-index rule)")
    return overrides


def check_csv_coverage(csv_path, by_path: dict, known: set[str], test: list, partial: bool) -> None:
    """Every CSV row names a map of this domain (`known`: their resolved paths); every test map is in the CSV
    unless `partial`."""
    stray = [(line, p) for p, (_, line) in by_path.items() if p not in known]
    if stray:
        line, p = min(stray)
        raise HDMAPFileError(f"{csv_path}:{line}: {p} is not a map of this domain's train/good, test/good or test/fault")
    uncovered = [i for i in test if i.condition_source != "condition CSV"]
    if uncovered and not partial:
        raise HDMAPFileError(f"{csv_path}: covers {len(test) - len(uncovered)} of {len(test)} test maps (missing e.g. "
                             f"{uncovered[0].path}); list them all, or pass --condition-csv-partial to use the "
                             f"file-index rule for the rest")


def condition_sources(items: list) -> dict[str, int]:
    """How many maps took their condition from which source."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.condition_source] = counts.get(item.condition_source, 0) + 1
    return counts
