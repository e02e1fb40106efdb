"""The fit-eval job: resolve a run's settings, fit one model on a domain, evaluate it under the tune/holdout protocol
and write its run folder (metrics, report, scores, plots, split, checkpoint)."""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from hdmap.config import load_yaml, merge, parse_set, plain
from hdmap.data.domain import load_domain
from hdmap.data.synthetic_default import ensure_embedded_dataset
from hdmap.features.cache import FeatureCache
from hdmap.spread import spreading
from hdmap.jobs.checkpoints import save_checkpoint
from hdmap.jobs.run_files import write_run_outputs
from hdmap.kinds.registry import default_config, fit_and_score, settings_of
from hdmap.run.settings import Run, SplitSettings


def resolve_config(data_root: str | None, model: str | None, config_path: str | None, sets: list[str],
                   backbone: str | None = None) -> Run:
    """The run's settings tree: defaults (of the model, with the backbone's presets), then the YAML file, then --set;
    checked once, here."""
    loaded = load_yaml(config_path) if config_path else {}
    model = model or loaded.get("model_name")
    config = default_config(real_data=data_root is not None, model_name=model, backbone=backbone)
    config = merge(config, loaded)
    if model:
        config["model_name"] = model
    return settings_of(merge(config, parse_set(sets)))


RUN_FILES = ("metrics.json", "report.md", "scores.csv", "model.ckpt", "config.json", "trial_metrics.json",
             "split.json", "scores.png", "anomaly_maps.png")


def held_run_files(out: Path) -> list[str]:
    """The files of an earlier run in `out` (a run folder is refused unless --overwrite)."""
    return [name for name in RUN_FILES if (out / name).exists()]


@dataclass
class DataOptions:
    """Where a run's maps come from and how their folders are read."""

    data_root: str | None = None  # None: the embedded synthetic data
    domain: str = "C"
    split: str | None = None  # a split.json to reuse
    condition_csv: str | None = None
    condition_csv_partial: bool = False
    ignore_other_files: bool = False
    allow_duplicates: bool = False  # a map in train and test, or under two labels: a recorded note, not an error


def fit_eval(config: dict | Run, source: DataOptions, out: str | Path, overwrite: bool = False,
             cache_dir: str | None = None, command: str | None = None, progress: bool = True,
             address: str | None = None) -> dict:
    """Fit and evaluate `config` (a run config, or its settings tree); write the run folder `out` (refused when it
    holds a run, unless `overwrite`). Nothing is written before the inputs and the fit succeeded. `address`: a Ray
    cluster to spread the fit over (hdmap/spread.py; metrics.json `spread` counts the tasks per node). Returns the
    metrics.json dict."""
    run = settings_of(config)
    out = Path(out)
    held = held_run_files(out)
    if held and not overwrite:
        raise FileExistsError(f"{out} already holds a run ({', '.join(held)}): pass --overwrite to replace it, "
                              f"or choose another --out")
    if source.split and not Path(source.split).is_file():
        raise FileNotFoundError(f"--split {source.split}: no such split.json")
    root = source.data_root or str(ensure_embedded_dataset())
    data = load_domain(root, source.domain, source.split, run.split.tune_fraction, run.split.seed,
                       source.condition_csv, condition_csv_partial=source.condition_csv_partial,
                       ignore_other_files=source.ignore_other_files, reuse_split=bool(source.split),
                       allow_duplicates=source.allow_duplicates)
    reused = SplitSettings(tune_fraction=data.split.tune_fraction, seed=data.split.seed)
    if source.split and reused != run.split:  # the settings say the split that ran
        print(f"[hdmap] --split {source.split}: its split.tune_fraction={reused.tune_fraction}, split.seed="
              f"{reused.seed} replace the settings' {plain(run.split)}", file=sys.stderr)
        run = replace(run, split=reused)
    with spreading(address) as spread:
        module, outputs, metrics = fit_and_score(run, data, FeatureCache(cache_dir, progress=progress),
                                                 progress=progress)
        if spread is not None:
            metrics["spread"] = spread.summary()
    write_run_folder(out, held, lambda folder: (data.split.save(folder / "split.json"),
                                                write_run_outputs(folder, metrics, data, outputs, command),
                                                save_checkpoint(folder, module, run, data, metrics)))
    return metrics


def write_run_folder(out: Path, held: list[str], write, disk_errors: tuple = (OSError, RuntimeError)) -> None:
    """`write(folder)` into a staging folder beside `out`, then its files into `out` (replacing the run it held):
    a full disk or a kill while writing leaves `out` as it was, and the error (one of `disk_errors`) names the
    folder."""
    staging = out.parent / f".{out.name}.{os.getpid()}.partial"
    try:
        staging.mkdir(parents=True, exist_ok=False)
        write(staging)
    except disk_errors as error:
        shutil.rmtree(staging, ignore_errors=True)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"{out}: could not write the run's results ({type(error).__name__}: {first}); free space on "
                      f"that disk or choose another --out: nothing was written there") from error
    except BaseException:  # SIGTERM, Ctrl-C: nothing half-written either
        shutil.rmtree(staging, ignore_errors=True)
        raise
    out.mkdir(parents=True, exist_ok=True)
    for name in held:
        (out / name).unlink(missing_ok=True)
    for item in staging.iterdir():
        os.replace(item, out / item.name)
    staging.rmdir()
