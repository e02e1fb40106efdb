"""The predict job: a fitted run (any kind) applied to new, unlabelled maps. Maps stream through in batches; each gets
its score, the run's own tune threshold, whether it is anomalous, the condition the gate sent it to, and where its
strongest anomaly lies (row = meshing position of the damaged tooth; hdmap/run/location.py). Writes
DIR/predictions.csv, DIR/summary.md, a histogram of the scores against the threshold and anomaly-map images of the
flagged maps, all at once at the end (nothing half-written)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hdmap.condition_names import CONDITIONS
from hdmap.data.errors import HDMAPFileError
from hdmap.data.map_files import IMAGE_SUFFIXES, content_digest, discover_domain, is_integer, read_map_and_dtype
from hdmap.features.cache import FeatureCache
from hdmap.jobs.checkpoints import load_checkpoint_data, read_checkpoint
from hdmap.jobs.fit_eval import write_run_folder
from hdmap.evaluation.report import plots_available
from hdmap.jobs.predict_report import plot_flagged, plot_histogram, summary_markdown
from hdmap.kinds.registry import kind_of, load_for_prediction, upgraded
from hdmap.progress import StageProgress
from hdmap.run.location import locate

PREDICTIONS_FILE = "predictions.csv"
COLUMNS = ("path", "score", "threshold", "anomalous", "condition", "row", "col_start", "col_end", "row_score", "note")
PREDICT_FILES = (PREDICTIONS_FILE, "summary.md", "scores.png", "flagged")
LIST_SUFFIXES = (".txt", ".lst", ".csv")


@dataclass
class PredictOptions:
    checkpoint: Path
    maps: list[str]
    out: Path
    batch: int = 256
    device: str = "auto"
    images: int = 24  # anomaly-map images of flagged maps at most (0: none)
    skip_bad: bool = False
    overwrite: bool = False
    data_root: str | None = None  # the run's data root, if it moved (train overlap, few-shot FE-CLIP)
    cache_dir: str | None = None
    progress: bool = True
    command: str | None = None


@dataclass
class Collected:
    """What the summary needs, bounded: every score, the flagged maps' rows, a capped set of images, the skipped."""

    scores: list[float] = field(default_factory=list)
    flagged: list[dict] = field(default_factory=list)
    images: list[tuple[str, np.ndarray, np.ndarray, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    in_train: int = 0


def map_paths(inputs: list[str]) -> list[Path]:
    """The maps named by folders (every .tif/.tiff below them), map files and list files (one path per line,
    relative to the list's folder); a missing input or a folder without maps is an error naming it."""
    paths: list[Path] = []
    for text in inputs:
        item = Path(text)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise HDMAPFileError(f"{item}: no maps (.tif/.tiff) in this folder or below it")
            paths += found
        elif item.is_file() and item.suffix.lower() in LIST_SUFFIXES:
            lines = [line.strip() for line in item.read_text().splitlines() if line.strip()]
            listed = [Path(line) if Path(line).is_absolute() else item.parent / line for line in lines]
            missing = [str(p) for p in listed if not p.is_file()]
            if missing:
                raise HDMAPFileError(f"{item}: lists {len(missing)} file(s) that do not exist, e.g. {missing[0]}")
            if not listed:
                raise HDMAPFileError(f"{item}: the list names no map")
            paths += listed
        elif item.is_file():
            paths.append(item)
        else:
            raise HDMAPFileError(f"{item}: no such map, folder or list of maps")
    return paths


def train_digests(extra: dict, data_root: str | None) -> tuple[dict[str, str], bool, str | None]:
    """({content digest: train file} of the run's train maps, whether they are stored as integers, a note when they
    cannot be read)."""
    root = data_root or extra.get("data_root")
    if not root or not Path(root).is_dir():
        return {}, False, (f"the run's data root {root} is not here: whether a map was one of its train references "
                           f"was not checked (pass --data-root); maps are expected as floats")
    items = discover_domain(root, extra["domain"], ignore_other_files=True)["train"]
    integer = is_integer(read_map_and_dtype(items[0].path)[1]) if items else False
    return {content_digest(item.path): item.path for item in items}, integer, None


def read_batch(paths: list[Path], shape: tuple[int, int], integer: bool, skip_bad: bool,
               skipped: list[str]) -> tuple[list[Path], np.ndarray]:
    """(readable paths, their maps) of a batch; a map that cannot be scored (unreadable, NaN/inf, another size, an
    integer map for a run of float maps or the reverse) is an error naming it, or, with `skip_bad`, listed in
    `skipped`."""
    good, maps = [], []
    for path in paths:
        try:
            array, dtype = read_map_and_dtype(path)
            if array.shape != shape:
                raise HDMAPFileError(f"{path}: map size {array.shape[0]}x{array.shape[1]} differs from the "
                                     f"{shape[0]}x{shape[1]} maps the run was fitted on")
            if is_integer(dtype) != integer:
                raise HDMAPFileError(f"{path}: stored as {dtype}, the run's maps as "
                                     f"{'integers' if integer else 'floats'}: it would enter the model on another "
                                     f"scale (convert it)")
        except HDMAPFileError as error:
            if not skip_bad:
                raise HDMAPFileError(f"{error} (pass --skip-bad to score the other maps and list this one)") from None
            skipped.append(str(error))
            continue
        good.append(path)
        maps.append(array)
    return good, np.stack(maps) if maps else np.zeros((0, *shape), dtype=np.float32)


def condition_names(route) -> list[str]:
    if route is None:
        return None
    return [CONDITIONS[int(code)] for code in np.asarray(route).reshape(-1)]


@dataclass
class Predictor:
    """Streams the maps through the run's kind in batches, writing predictions.csv as it goes (into a staging
    folder: `predict` moves it into place once everything is written)."""

    options: PredictOptions
    run: object
    kind: object
    module: object
    threshold: float
    shape: tuple[int, int]
    known_train: dict[str, str]
    integer: bool
    domain: object = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # the run's checkpoint record (summary.md names its run)
    collected: Collected = field(default_factory=Collected)

    def __post_init__(self):
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if self.options.device == "auto" else self.options.device)
        self.cache = FeatureCache(self.options.cache_dir, progress=False)

    def write(self, folder: Path, paths: list[Path]) -> None:
        options = self.options
        with (folder / PREDICTIONS_FILE).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            with StageProgress("predict", len(paths), "maps", enabled=options.progress) as progress:
                for start in range(0, len(paths), options.batch):
                    batch = paths[start:start + options.batch]
                    good, maps = read_batch(batch, self.shape, self.integer, options.skip_bad,
                                            self.collected.skipped)
                    if len(good):
                        self.score_batch(good, maps, writer)
                    progress.advance(len(batch))
        if not self.collected.scores:
            raise HDMAPFileError(f"no map could be scored: all {len(paths)} were skipped "
                                 f"({self.collected.skipped[0]})")
        self.write_summary(folder)

    def score_batch(self, good: list[Path], maps: np.ndarray, writer) -> None:
        outputs = self.kind.predict(self.module, self.run, maps, [str(p) for p in good], self.cache, self.device,
                                    self.domain)
        scores = outputs["scores"].double().numpy()
        where = locate(outputs, maps)
        conditions = condition_names(outputs.get("route")) or ["unknown"] * len(good)
        for k, path in enumerate(good):
            row = self.row(path, float(scores[k]), conditions[k], where, k)
            writer.writerow([row[c] for c in COLUMNS])
            self.collected.scores.append(float(scores[k]))
            if row["anomalous"]:
                self.collected.flagged.append(row)
                if len(self.collected.images) < self.options.images:
                    anomaly = outputs["patch_maps"][k].float().numpy()
                    self.collected.images.append((str(path), maps[k], anomaly, int(where["row"][k])))

    def row(self, path: Path, score: float, condition: str, where: dict, k: int) -> dict:
        train_map = self.known_train.get(content_digest(path))
        if train_map:
            self.collected.in_train += 1
        return {"path": str(path), "score": repr(score), "threshold": repr(self.threshold),
                "anomalous": int(score >= self.threshold), "condition": condition, "row": int(where["row"][k]),
                "col_start": int(where["col_start"][k]), "col_end": int(where["col_end"][k]),
                "row_score": f"{float(where['row_score'][k]):.6g}",
                "note": f"a train map of the run ({Path(train_map).name}): its score is no prediction"
                if train_map else ""}

    def write_summary(self, folder: Path) -> None:
        notes, figures = list(self.notes), []
        if not plots_available():
            notes.append("the histogram and the anomaly-map images were skipped: matplotlib is not installed here")
        else:
            figures = plot_histogram(folder, np.array(self.collected.scores), self.threshold)
            if self.collected.images:
                plot_flagged(folder / "flagged", self.collected.images)
        (folder / "summary.md").write_text(summary_markdown(self.options, self.run, self.extra, self.threshold,
                                                            self.collected, notes, figures))


def predict(options: PredictOptions) -> dict:
    """Score `options.maps` with the run of `options.checkpoint`; write the prediction folder. Returns the counts."""
    checkpoint = read_checkpoint(options.checkpoint)
    extra = checkpoint.get("hdmap") or {}
    if not extra:
        raise ValueError(f"{options.checkpoint}: FE-CLIP adapters without an hdmap run record have no threshold to "
                         f"predict with: fit them with `hdmap fit-eval --model feclip` first")
    held = [name for name in PREDICT_FILES if (options.out / name).exists()]
    if held and not options.overwrite:
        raise FileExistsError(f"{options.out} already holds predictions ({', '.join(held)}): pass --overwrite to "
                              f"replace them, or choose another --out")
    paths = map_paths(options.maps)
    run, module = load_for_prediction(options.checkpoint, upgraded(extra["config"]))
    kind = kind_of(run)
    known_train, integer, train_note = train_digests(extra, options.data_root)
    predictor = Predictor(options, run, kind, module, float(extra["tune"]["threshold"]), tuple(extra["map_shape"]),
                          known_train, integer,
                          load_checkpoint_data(extra, options.data_root) if kind.predict_reads_train(run) else None,
                          [train_note] if train_note else [], extra)
    write_run_folder(options.out, held, lambda folder: predictor.write(folder, paths), disk_errors=(OSError,))
    collected = predictor.collected
    return {"maps": len(collected.scores), "flagged": len(collected.flagged), "skipped": collected.skipped,
            "in_train": collected.in_train, "threshold": predictor.threshold, "kind": run.model_name}
