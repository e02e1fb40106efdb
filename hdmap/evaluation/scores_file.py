"""scores.csv: one row per test map of a run (file, label, condition, split, score), written beside metrics.json so
two runs can be compared map by map (`hdmap compare`)."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from hdmap.atomic_files import atomic_path

SCORES_FILE = "scores.csv"
COLUMNS = ("file", "label", "condition", "split", "score")


def write_scores(out: str | Path, files: list[str], labels, conditions, tune_idx, scores) -> Path:
    split = np.full(len(files), "holdout", dtype=object)
    split[np.asarray(tune_idx, int)] = "tune"
    path = Path(out) / SCORES_FILE
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in zip(files, np.asarray(labels, int), conditions, split, np.asarray(scores, float)):
            writer.writerow([row[0], int(row[1]), row[2], row[3], repr(float(row[4]))])
    return path


def read_scores(path: str | Path) -> dict[str, np.ndarray]:
    """{column: array} of a scores.csv; a file that is not one is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-map scores (runs written before scores.csv existed: run "
                                f"`hdmap eval` on the run's checkpoint to write them)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: expected columns {','.join(COLUMNS)}")
    out = {c: np.array([r[c] for r in rows]) for c in COLUMNS}
    out["label"], out["score"] = out["label"].astype(int), out["score"].astype(float)
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (metrics.json keeps that of its scores.csv: `hdmap compare` checks it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
