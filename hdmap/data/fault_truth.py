"""Where each fault of a domain really is, when the data says so: `domain_X/fault_truth.csv` (written by `hdmap synth`;
your own labelled data can carry one too): `path` (relative to the domain folder), `defect`, the band's first core
row `row` and its `width` in rows. Only band defects have a row; other defects are left out."""
from __future__ import annotations

import csv
from pathlib import Path

from hdmap.data.errors import HDMAPFileError

TRUTH_FILE = "fault_truth.csv"


def read_fault_rows(domain_dir: str | Path) -> dict[str, tuple[int, int]]:
    """{path relative to the domain folder: (first row, last row)} of every band fault; {} without the file."""
    path = Path(domain_dir) / TRUTH_FILE
    if not path.is_file():
        return {}
    rows = {}
    with path.open(newline="") as handle:
        for number, record in enumerate(csv.DictReader(handle), 2):
            if record.get("defect", "band") != "band":
                continue
            try:
                first, width = int(record["row"]), int(record.get("width") or 1)
            except (KeyError, TypeError, ValueError):
                raise HDMAPFileError(f"{path} line {number}: expected integer `row` and `width` columns, got "
                                     f"{record}") from None
            rows[record["path"]] = (first, first + width - 1)
    return rows
