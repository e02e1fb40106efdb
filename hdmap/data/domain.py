"""Everything a run needs about one domain: items, raw maps, labels, conditions, and the saved split."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from hdmap.data.conditions import condition_sources
from hdmap.data.errors import HDMAPFileError
from hdmap.data.fault_truth import read_fault_rows
from hdmap.data.map_files import MapItem, content_digest, check_dtypes, condition_record, discover_domain, read_map_and_dtype
from hdmap.condition_names import UNKNOWN
from hdmap.data.splits import SplitMismatchError, TestSplit, small_block_notes, split_tune_holdout


MIN_SIDE = 3  # rows and columns a map needs at least: a band is a row among neighbouring rows


@dataclass
class DomainData:
    root: str
    domain: str
    train: list[MapItem]
    test: list[MapItem]
    train_maps: np.ndarray  # (N, H, W) float32
    test_maps: np.ndarray
    split: TestSplit
    notes: tuple[str, ...] = ()  # what reading the data decided (e.g. integer maps read as floats)
    fault_rows: dict[int, tuple[int, int]] = field(default_factory=dict)  # test index -> true band rows (first, last)

    @property
    def test_labels(self) -> np.ndarray:
        return np.array([i.label for i in self.test])

    @property
    def test_conditions(self) -> list[str]:
        return [i.condition for i in self.test]

    @property
    def train_truth(self) -> list[str]:
        return [i.condition for i in self.train]

    def condition_sources(self) -> dict[str, int]:
        """How many test maps took their condition from the CSV, the file-index rule or a checkpoint record."""
        return condition_sources(self.test)

    def condition_record(self) -> dict[str, str]:
        """{path tail: condition} of train and test as used by this run (saved in checkpoints)."""
        return condition_record(self.train + self.test)

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """Hashes of train and test file names + contents (read once per DomainData, not per checkpoint)."""
        return {"train": content_fingerprint(self.train), "test": content_fingerprint(self.test)}


def content_fingerprint(items: list[MapItem]) -> str:
    """Hash of the file names and contents (not their location: a moved data root still matches)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(Path(item.path).name.encode())
        digest.update(Path(item.path).read_bytes())
    return digest.hexdigest()[:16]


def read_stacked(items: list[MapItem]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(train maps, test maps, notes) of a domain; maps of another shape, or integer maps among float maps, are
    an error naming the file."""
    stacked, dtypes, shapes = None, [], []
    for k, item in enumerate(items):  # straight into one array: a domain of 100,000 maps is held once, not twice
        array, dtype = read_map_and_dtype(item.path)
        dtypes.append(dtype)
        shapes.append(array.shape)
        if stacked is None and min(array.shape) >= MIN_SIDE:
            stacked = np.empty((len(items), *array.shape), np.float32)
        if stacked is not None and array.shape == stacked.shape[1:]:
            stacked[k] = array
    small = next((k for k, shape in enumerate(shapes) if min(shape) < MIN_SIDE), None)
    if small is not None:
        raise HDMAPFileError(f"{items[small].path}: map size {shapes[small][0]}x{shapes[small][1]}; hdmap needs "
                             f"at least {MIN_SIDE} rows and {MIN_SIDE} columns (a band is a row among its neighbours)")
    odd = next((k for k, shape in enumerate(shapes) if shape != shapes[0]), None)
    if odd is not None:
        raise HDMAPFileError(f"{items[odd].path}: map shape {shapes[odd]} differs from the others of its domain "
                             f"({sorted(set(shapes))})")
    note = check_dtypes([i.path for i in items], dtypes)
    if note:
        print(f"[hdmap] {note}", file=sys.stderr)
    n_train = sum(1 for i in items if i.subset == "train/good")
    notes = ((note,) if note else ()) + value_notes(items, stacked)
    for line in notes[1 if note else 0:]:
        print(f"[hdmap] {line}", file=sys.stderr)
    return stacked[:n_train], stacked[n_train:], notes


def value_notes(items: list[MapItem], maps: np.ndarray) -> tuple[str, ...]:
    """Maps whose values a map of vibration energy cannot have, named (they are used as they are: a constant train
    map pulls a memory bank and the gate toward it; all-negative maps break the log and percentile scalings)."""
    flat = maps.reshape(len(maps), -1)
    notes = []
    for what, bad in (("constant (every value equal, e.g. all zero)", flat.min(axis=1) == flat.max(axis=1)),
                      ("without a positive value (all <= 0)", flat.max(axis=1) <= 0)):
        found = np.flatnonzero(bad)
        if len(found):
            named = ", ".join(items[k].path for k in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3
                                                                   else "")
            notes.append(f"{len(found)} map(s) {what}: {named}; check them (a sensor drop-out or a unit error?)")
    return tuple(notes)


def load_domain(root: str, domain: str, split_path: str | Path | None = None, tune_fraction: float = 0.3,
                split_seed: int = 0, condition_csv: str | None = None, split: TestSplit | None = None,
                condition_overrides: dict[str, str] | None = None, condition_csv_partial: bool = False,
                ignore_other_files: bool = False, reuse_split: bool = False,
                allow_duplicates: bool = False) -> DomainData:
    """Read a domain. The split is `split` if given, else the one at `split_path` if it exists, else a new one
    (saved to `split_path`); a split that does not match the test files is refused, and so is a saved split made
    with another tune fraction or seed than the ones asked for, unless `reuse_split` (the user named the file)."""
    items = discover_domain(root, domain, condition_csv, condition_overrides, condition_csv_partial,
                            ignore_other_files)
    paths = [i.path for i in items["test"]]
    if split is None and split_path and Path(split_path).exists():
        split = TestSplit.load(split_path)
        asked, saved = (tune_fraction, split_seed), (split.tune_fraction, split.seed)
        if not reuse_split and (float(saved[0]), int(saved[1])) != (float(asked[0]), int(asked[1])):
            raise SplitMismatchError(f"{split_path} was made with split.tune_fraction={saved[0]}, split.seed="
                                     f"{saved[1]}; this run asks for split.tune_fraction={asked[0]}, split.seed="
                                     f"{asked[1]}: set those, or remove the file to make a new split")
    if split is not None:
        split.check_matches(paths)
    else:
        split = split_tune_holdout([i.label for i in items["test"]], [i.condition for i in items["test"]], paths,
                                   tune_fraction, split_seed)
        if split_path:
            split.save(split_path)
    duplicates = duplicate_notes(items["train"], items["test"], allow_duplicates)
    train_maps, test_maps, notes = read_stacked(items["train"] + items["test"])
    notes = tuple(notes) + duplicates
    notes = tuple(notes) + tuple(small_block_notes(split, [i.label for i in items["test"]]))
    unknown = sum(1 for i in items["test"] if i.condition == UNKNOWN)
    if unknown:
        notes += (f"{unknown} test map(s) have the condition unknown (condition CSV): they count in the overall "
                  f"numbers and in no cold / warm number",)
    return DomainData(str(root), domain, items["train"], items["test"], train_maps, test_maps, split, notes,
                      true_band_rows(Path(root) / f"domain_{domain}", items["test"]))


def duplicate_notes(train: list[MapItem], test: list[MapItem], allowed: bool) -> tuple[str, ...]:
    """The same bytes in train and test (a test map fitted as a reference) or under two test labels (one map, two
    labels): an error naming both files, or with `allowed` a note (metrics.json keeps it)."""
    seen: dict[str, MapItem] = {}
    found = []
    for item in train + test:
        digest = content_digest(item.path)
        first = seen.setdefault(digest, item)
        if first is item:
            continue
        if first.subset != item.subset and (first.subset == "train/good" or first.label != item.label):
            found.append(f"{first.path} and {item.path} hold the same bytes ({first.subset} and {item.subset})")
    if found and not allowed:
        raise HDMAPFileError(f"{found[0]}: a map in train and test, or under two labels, makes the numbers "
                             f"meaningless; remove one (or pass --allow-duplicates to go on with a recorded note)"
                             + (f"; {len(found) - 1} more such pair(s)" if len(found) > 1 else ""))
    return tuple(f"--allow-duplicates: {line}" for line in found[:5]) + (
        (f"--allow-duplicates: {len(found) - 5} more such pair(s)",) if len(found) > 5 else ())


def sample_indices(n: int, count: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random sample of `count` of `n` items (all of them when count is None or >= n)."""
    if count is None or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))


def train_sample(data: DomainData, count: int | None, seed: int) -> DomainData:
    """The domain with `count` of its train maps (seeded), its test maps as they are; noted."""
    picked = sample_indices(len(data.train), count, seed)
    if len(picked) == len(data.train):
        return data
    note = (f"model.train_maps={count}: the fit read {len(picked)} of the {len(data.train)} train maps (a random "
            f"sample, seed {seed})")
    return replace(data, train=[data.train[i] for i in picked], train_maps=data.train_maps[picked],
                   notes=tuple(data.notes) + (note,))


def true_band_rows(domain_dir: Path, test: list[MapItem]) -> dict[int, tuple[int, int]]:
    """{test index: (first, last) true band row} from the domain's fault_truth.csv (none without it)."""
    rows = read_fault_rows(domain_dir)
    if not rows:
        return {}
    found = {}
    for index, item in enumerate(test):
        try:
            tail = Path(item.path).resolve().relative_to(domain_dir.resolve()).as_posix()
        except ValueError:
            continue
        if tail in rows and item.label == 1:
            found[index] = rows[tail]
    return found
