"""Reference sampling from train and the one tune/holdout split of test, saved beside the results."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hdmap.atomic_files import write_text_atomic
from hdmap.condition_names import CONDITIONS
from hdmap.data.map_files import path_tail


class SplitMismatchError(ValueError):
    """A saved split that does not match the data it is applied to."""


class SplitTooSmallError(ValueError):
    """Too few test maps for a tune block and a holdout block that each hold both labels."""


MIN_PER_LABEL = 10  # fewer maps of a label in a block: the block's intervals say little (a printed note)


def sample_uniform(n_items: int, k: int | None, seed: int) -> np.ndarray:
    """k indices of n_items without replacement (all of them when k is None), sorted."""
    if k is None:
        return np.arange(n_items)
    if k > n_items:
        raise ValueError(f"asked for {k} references but only {n_items} are available")
    return np.sort(np.random.default_rng(seed).choice(n_items, size=k, replace=False))


def sample_per_condition(assignment: list[str] | np.ndarray, k: int | None, seed: int,
                         conditions: tuple[str, ...] = CONDITIONS) -> dict[str, np.ndarray]:
    """k reference indices per condition given a condition assignment of train (None = all of each)."""
    assignment = np.asarray(assignment)
    picked = {}
    for offset, condition in enumerate(conditions):
        members = np.flatnonzero(assignment == condition)
        if k is not None and len(members) < k:
            raise ValueError(f"asked for {k} references of condition '{condition}' but the assignment has only "
                             f"{len(members)} ({', '.join(f'{c}: {int((assignment == c).sum())}' for c in conditions)})")
        picked[condition] = members[sample_uniform(len(members), k, seed + offset)]
    return picked


def select_references(n_items: int, shots: int | None, seed: int, assignment=None,
                      conditions: tuple[str, ...] = CONDITIONS) -> np.ndarray:
    """Reference indices: k per condition under `assignment` (grouped by condition, in `conditions` order),
    else 2k uniformly, sorted (shots None = all)."""
    if shots is None:
        return np.arange(n_items)
    if assignment is None:
        return sample_uniform(n_items, 2 * shots, seed)
    picked = sample_per_condition(assignment, shots, seed, conditions)
    return np.concatenate([picked[c] for c in conditions])


@dataclass
class TestSplit:
    """Indices into the test item list: `tune` picks thresholds/configs, `holdout` is reported."""

    tune: list[int]
    holdout: list[int]
    seed: int
    tune_fraction: float
    paths: list[str]  # the test items it was made for, in order

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> "TestSplit":
        """A split.json, or an error naming the file when it is not one (truncated, another shape)."""
        try:
            data = json.loads(Path(path).read_text())
            split = cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError) as error:
            raise SplitMismatchError(f"{path}: not a split.json hdmap wrote ({type(error).__name__}: {error}); remove "
                                     f"it to make a new split, or pass the run's own split.json") from None
        if split is None:
            raise SplitMismatchError(f"{path}: not a split.json hdmap wrote (a {type(data).__name__}, not a mapping)")
        return split

    def check_matches(self, paths: list[str]) -> None:
        """Refuse to apply this split to another list of test files (compared by their last three path parts,
        e.g. test/good/000001.tiff, so a moved data root still matches)."""
        def tails(items):
            return [path_tail(p) for p in items]

        if tails(paths) != tails(self.paths):
            missing = set(tails(self.paths)) ^ set(tails(paths))
            example = sorted(missing)[:3]
            raise SplitMismatchError(f"saved split was made for {len(self.paths)} other test files than the "
                                     f"{len(paths)} given (differences e.g. {example})")


def split_tune_holdout(labels, conditions, paths, tune_fraction: float = 0.3, seed: int = 0) -> TestSplit:
    """Stratified by label x condition: each stratum gives round(fraction * size) items to tune."""
    if not 0.0 < tune_fraction < 1.0:
        raise ValueError(f"tune_fraction must lie in (0, 1), got {tune_fraction}")
    labels, conditions = np.asarray(labels), np.asarray(conditions)
    rng = np.random.default_rng(seed)
    tune: list[int] = []
    for label in np.unique(labels):
        for condition in np.unique(conditions):
            members = np.flatnonzero((labels == label) & (conditions == condition))
            if len(members) == 0:
                continue
            n_tune = int(round(tune_fraction * len(members)))
            if len(members) >= 2:
                n_tune = min(max(n_tune, 1), len(members) - 1)
            tune.extend(rng.permutation(members)[:n_tune].tolist())
    tune = sorted(tune)
    holdout = sorted(set(range(len(labels))) - set(tune))
    check_blocks(labels, conditions, tune, holdout, tune_fraction)
    return TestSplit(tune, holdout, seed, tune_fraction, [str(p) for p in paths])


LABEL_NAMES = {0: "good", 1: "faulty"}


def block_counts(labels: np.ndarray, indices) -> dict:
    """{label name: maps of that label among `indices`}."""
    picked = labels[np.asarray(indices, dtype=np.int64)] if len(indices) else np.array([])
    return {LABEL_NAMES.get(label, str(label)): int((picked == label).sum()) for label in np.unique(labels).tolist()}


def check_blocks(labels: np.ndarray, conditions: np.ndarray, tune: list[int], holdout: list[int],
                 tune_fraction: float) -> None:
    """A threshold is chosen on tune and judged on holdout: each block needs maps of both labels. Too few is an
    error with the numbers a user needs."""
    counts = {"tune": block_counts(labels, tune), "holdout": block_counts(labels, holdout)}
    short = [f"{block} has {count} {label} map(s)" for block, by_label in counts.items()
             for label, count in by_label.items() if count < 1]
    if short or len(np.unique(labels)) < 2:
        strata = {f"{LABEL_NAMES.get(label, label)}/{condition}":
                  int(((labels == label) & (conditions == condition)).sum())
                  for label in np.unique(labels).tolist() for condition in np.unique(conditions).tolist()}
        raise SplitTooSmallError(f"too few test maps for a tune and a holdout block with both labels: "
                                 f"{'; '.join(short) or 'only one label in test'} (test maps per label/condition: "
                                 f"{strata}; split.tune_fraction={tune_fraction}). Each block needs at least one good "
                                 f"and one faulty map: at least 2 of each label, and {MIN_PER_LABEL}+ per label for "
                                 f"intervals that say something")


def small_block_notes(split: "TestSplit", labels) -> list[str]:
    """A note for each block holding fewer than MIN_PER_LABEL maps of a label: its intervals are wide or
    degenerate."""
    labels = np.asarray(labels)
    notes = []
    for block, indices in (("tune", split.tune), ("holdout", split.holdout)):
        counts = block_counts(labels, indices)
        few = {label: n for label, n in counts.items() if n < MIN_PER_LABEL}
        if few:
            shown = ", ".join(f"{n} {label}" for label, n in few.items())
            notes.append(f"the {block} block holds only {shown} map(s) (fewer than {MIN_PER_LABEL} of a label): its "
                         f"numbers and intervals rest on very few maps")
    return notes
