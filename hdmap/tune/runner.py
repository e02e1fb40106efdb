"""The search: Ray Tune `Tuner` + OptunaSearch (seeded TPE), concurrency limit, per-trial resources, storage,
resume, dashboard, failed-trial tolerance; then the best checkpoint is evaluated on holdout."""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hdmap import search_spaces
from hdmap.atomic_files import write_text_atomic
from hdmap.config import ConfigError, merge
from hdmap.kinds.registry import DEFAULT_MODEL, kind_of, settings_of
from hdmap.spread import trial_bundles
from hdmap.tune.cluster_fit import check_placeable
from hdmap.tune.gpu_check import check_gpu_memory, check_gpus_usable
from hdmap.tune.search_files import check_search_files, record_search_files
from hdmap.tune.spaces import load_space
from hdmap.tune.start_points import start_points

SPACES_DIR = Path(search_spaces.__file__).resolve().parent  # package data: works from an installed package
RUN_FILE = "hdmap_search.json"
OWN_ERRORS_DIR = "trial_errors"  # the trials' own errors, where every node reads them (hdmap/tune/retries.py)
TRIAL_RESULTS_DIR = "trial_results"  # finished trials' values by config (hdmap/tune/trial_results.py)


@dataclass
class SearchOptions:
    data_root: str | None = None
    domain: str = "C"
    model: str = DEFAULT_MODEL
    backbone: str | None = None  # a backbone preset replacing the space's default backbone
    space: str | None = None  # default: search_spaces/<model>.yaml (<model>_quick.yaml on the embedded data)
    num_samples: int | None = None  # trials (12 on the embedded data, 64 on real data); with --resume: grow to this
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str = "auto"  # auto: the cluster's GPUs shared by max_concurrent trials (at most 1 each)
    address: str | None = None
    storage: str = "runs/tune"
    name: str | None = None
    resume: bool = False
    retry_failed: bool = False
    max_retries: int = 1  # a trial that fails (a lost worker node, an error) runs again this many times
    trial_tasks: int = 0  # task bundles each trial reserves beside its own, to spread its fit over (hdmap/spread.py)
    dashboard: bool = False
    metric: str | None = None  # default: the space's metric
    start: list[str] = field(default_factory=list)  # YAML files of configs tried right after the defaults
    repeats: int = 1  # a trial's objective: the mean over this many reference/coreset seeds
    keep_defaults_within: float = 1.0  # a trial must beat the defaults by more than this many standard errors
    seed: int = 0
    cache_dir: str | None = None
    no_cache: bool = False
    condition_csv: str | None = None
    condition_csv_partial: bool = False
    ignore_other_files: bool = False
    allow_duplicates: bool = False  # a map in train and test, or under two labels: a recorded note, not an error
    allow_space_change: bool = False  # --resume with a space file edited since the search began (recorded)
    trust_search_files: bool = False  # --resume a folder whose Ray files are not as the search left them
    config: str | None = None  # a YAML file of base settings (as fit-eval's --config)
    sets: list[str] = field(default_factory=list)  # base settings, key=value (as fit-eval's --set)
    optuna_storage: str | None = None  # the Optuna study's database URL (default: SQLite in the experiment folder)

    def study_storage(self, exp_dir: Path) -> str:
        return self.optuna_storage or f"sqlite:///{exp_dir / (self.name + '.optuna.db')}"
    verbose: int = 1

    def space_path(self) -> Path:
        if self.space:
            return Path(self.space)
        quick = "_quick" if self.data_root is None else ""  # embedded synthetic data: the small offline space
        return SPACES_DIR / f"{kind_of(self.model).space_name}{quick}.yaml"


def absolute_paths(options: SearchOptions) -> None:
    """Paths the trials read, made absolute: Ray runs each trial in a folder of its own, where a path relative
    to where `hdmap tune` was started names nothing."""
    for name in ("data_root", "condition_csv", "cache_dir", "space", "config"):
        value = getattr(options, name)
        if value:
            setattr(options, name, str(Path(value).resolve()))
    options.start = [str(Path(p).resolve()) for p in options.start]


def experiment_dir(options: SearchOptions) -> Path:
    return Path(options.storage).resolve() / options.name


def latest_experiment(storage: str) -> str:
    runs = sorted((p for p in Path(storage).resolve().glob(f"*/{RUN_FILE}")), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"--resume: no search found under {Path(storage).resolve()} (looked for */{RUN_FILE})")
    return runs[-1].parent.name


def start_ray(options: SearchOptions, exp_dir: Path):
    """Join `--address`, or start a local cluster whose processes end with the search however it ends."""
    import ray

    from hdmap.tune.ray_reaper import marked_ray_start

    if ray.is_initialized():
        return None
    kwargs = {"include_dashboard": options.dashboard, "log_to_driver": options.verbose > 0,
              "configure_logging": True, "logging_level": "WARNING",
              # Ray 2.60 leaves every GPU visible to a task given none; this restores hiding them (the trial also
              # hides them itself: hdmap/tune/trial_devices.py)
              "runtime_env": {"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}}}
    if options.dashboard:
        kwargs.update(dashboard_host="127.0.0.1")
    if options.address:
        context = ray.init(address=options.address, **kwargs)
    else:
        with marked_ray_start(exp_dir):
            context = ray.init(**kwargs)
    from hdmap import termination

    termination.reinstall()  # ray.init replaced the driver's SIGTERM handler with a plain exit
    if options.dashboard and getattr(context, "dashboard_url", None):
        port = str(context.dashboard_url).rsplit(":", 1)[-1]  # 8265, or the next free port Ray took
        print(f"[hdmap] Ray dashboard: http://{context.dashboard_url}  (remote machine: "
              f"ssh -L {port}:127.0.0.1:{port} USER@HOST, then open http://127.0.0.1:{port}; if it asks for a token, "
              f"`ray get-auth-token` prints it)", file=sys.stderr)
    return context


def fit_space_to_backbone(space, base_config: dict, chosen: str | None) -> None:
    """Drop searched settings the backbone decides (`fixed_by_preset`), with a printed note."""
    from hdmap.features.backbones import fixed_by_preset

    fixed = fixed_by_preset((base_config.get("backbone") or {}).get("name"), bool(chosen))
    dropped = [p.key for p in space.params if p.key in fixed]
    if dropped:
        space.params = [p for p in space.params if p.key not in fixed]
        values = {key: base_config["backbone"]["taps"] if key == "backbone.taps" else base_config[key]
                  for key in dropped}
        note = (f"backbone {base_config['backbone']['name']}: {', '.join(dropped)} fixed to its preset {values} (the "
                f"space's choices do not apply to it)")
        space.notes.append(note)
        print(f"[hdmap] {note}", file=sys.stderr)


def make_scheduler(space, base_config: dict):
    """ASHA for iterative trainables (they report every epoch), with max_t the most epochs any trial can run;
    None (run every trial to the end) otherwise."""
    if not kind_of(base_config).iterative:
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_epochs = int(space.largest("train.epochs", base_config))
    return ASHAScheduler(time_attr="training_iteration", max_t=max(1, max_epochs), grace_period=1, reduction_factor=3)


def space_taps(space, base_config: dict) -> tuple[int, ...]:
    """Every backbone tap a trial of this search can ask for: a feature pass extracts them all at once."""
    taps = set((base_config.get("backbone") or {}).get("taps", []))
    for param in space.params:
        if param.key == "backbone.taps":
            taps |= {t for value in param.values for t in (value if isinstance(value, list) else [value])}
    return tuple(sorted(taps))


def gpu_memory_needs(space, base_config: dict, n_train: int, options: SearchOptions) -> tuple[int, str]:
    """The kind's largest GPU memory need in the space, from one backbone pass per input size."""
    from hdmap.features.cache import FeatureCache, default_cache_dir
    from hdmap.tune.cache_estimate import bytes_per_map

    cache = FeatureCache(options.cache_dir or default_cache_dir(), progress=False)
    taps = space_taps(space, base_config)
    return kind_of(base_config).gpu_memory(space, base_config, n_train,
                                           lambda size, resize: bytes_per_map(cache, base_config, taps, size, resize))


def build_trainable(options: SearchOptions, base_config: dict, metric: str, split_path: Path, root: str,
                    prefetch_taps: tuple[int, ...] = (), space=None, n_train: int = 0):
    from ray import tune

    from hdmap.features.cache import default_cache_dir
    from hdmap.tune.trainables import trainable

    share = gpus_per_trial(options)
    check_placeable(options.cpus_per_trial, share, ray_nodes())
    report = check_gpus_usable(share)
    if report and kind_of(base_config).gpu_memory and space is not None:
        check_gpu_memory(gpu_memory_needs(space, base_config, n_train, options), share, report["total_memory"])
    if options.gpus_per_trial == "auto":
        print(f"[hdmap] --gpus-per-trial auto: {share:g} GPU per trial ({options.max_concurrent} concurrent trials on "
              f"the cluster's {ray_gpus():g} GPU(s))", file=sys.stderr)

    data_args = {"root": root, "domain": options.domain, "split_path": str(split_path),
                 "tune_fraction": base_config["split"]["tune_fraction"], "split_seed": base_config["split"]["seed"],
                 "condition_csv": options.condition_csv, "condition_csv_partial": options.condition_csv_partial,
                 "ignore_other_files": options.ignore_other_files, "allow_duplicates": options.allow_duplicates}
    trainable = tune.with_parameters(trainable, base_config=base_config,
                                     data_args=data_args, metric=metric,
                                     cache_dir=str(options.cache_dir or default_cache_dir()),
                                     cache_enabled=not options.no_cache, threads=int(max(1, options.cpus_per_trial)),
                                     repeats=options.repeats, prefetch_taps=prefetch_taps, started=time.time(),
                                     errors_dir=str(experiment_dir(options) / OWN_ERRORS_DIR), gpu_share=share,
                                     results_dir=str(experiment_dir(options) / TRIAL_RESULTS_DIR),
                                     trial_tasks=options.trial_tasks, task_cpus=options.cpus_per_trial)
    if options.trial_tasks:  # the trial's bundle, then one like it per task of its fit (its placement group)
        return tune.with_resources(trainable, tune.PlacementGroupFactory(
            trial_bundles(options.trial_tasks, options.cpus_per_trial, share), strategy="SPREAD"))
    return tune.with_resources(trainable, {"cpu": options.cpus_per_trial, "gpu": share})


def gpus_per_trial(options: SearchOptions, cluster_gpus: float | None = None) -> float:
    """The GPU share of a trial: `auto` = the cluster's GPUs (Ray's count, not what this process's CUDA sees: a
    CPU-only head may drive GPU workers) split over the concurrent trials in shares 1/k that pack whole GPUs, at most
    one GPU a trial (0 on a cluster without GPUs: a trial given no GPU hides them and runs on the CPU); a number as
    given, unless the concurrent trials would then pack onto fewer GPUs than the cluster has (`spread_share`)."""
    if cluster_gpus is None:
        cluster_gpus = ray_gpus()
    if options.gpus_per_trial != "auto":
        return spread_share(float(options.gpus_per_trial), options.max_concurrent, cluster_gpus)
    if cluster_gpus <= 0:
        return 0.0
    return 1.0 / math.ceil(max(1, options.max_concurrent) / cluster_gpus)  # shares that pack: 3 trials, 2 GPUs: 1/2


def spread_share(share: float, concurrent: int, gpus: float) -> float:
    """Ray fills one GPU's fractional shares before the next: 8 trials at 0.25 on 8 GPUs run on 2 of them. A share
    that would leave GPUs idle is raised to 1 / ceil(trials / GPUs) (each trial then has more of a GPU, never
    less), said; whole-GPU trials fewer than the GPUs are said."""
    if share <= 0 or gpus <= 0:
        return share
    if share >= 1:
        used = min(gpus, concurrent * share)
        if used < gpus:
            print(f"[hdmap] --gpus-per-trial {share:g} with --max-concurrent {concurrent} would leave {gpus - used:g} "
                  f"of the cluster's {gpus:g} GPUs idle: raise --max-concurrent to use them", file=sys.stderr)
        return share
    per_gpu = max(1, math.floor(1 / share + 1e-9))
    packed = math.ceil(concurrent / per_gpu)
    if packed >= gpus:
        return share
    spread = 1.0 / math.ceil(concurrent / gpus)
    idle = f"; {gpus - concurrent:g} stay idle: raise --max-concurrent to use them" if concurrent < gpus else ""
    print(f"[hdmap] --gpus-per-trial {share:g} with --max-concurrent {concurrent} would leave {gpus - packed:g} of the "
          f"cluster's {gpus:g} GPUs idle (Ray fills one GPU's shares before the next: the trials would pack onto "
          f"{packed}): each trial gets {spread:g} GPU instead{idle}", file=sys.stderr)
    return spread


def with_base_settings(base_config: dict, space, options: SearchOptions) -> dict:
    """The search's base settings changed by --config FILE and --set key=value (checked by name and value); a
    setting the space searches is refused: its value is the search's to choose."""
    from hdmap.config import load_yaml, parse_set
    from hdmap.kinds.registry import validate

    layers = [load_yaml(options.config) if options.config else {}, parse_set(options.sets)]  # file, then --set
    if not any(layers):
        return base_config
    searched = [p.key for p in space.params]
    for key in (k for layer in layers for k in dotted_keys(layer)):
        clash = next((k for k in searched if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
        if clash:
            raise ConfigError(f"--set/--config {key}: the space ({options.space_path().name}) searches {clash}; to "
                              f"run every trial with one value, copy {options.space_path()} and move {clash} from "
                              f"params: to fixed: (then --space COPY), or leave it to the search")
    for layer in layers:
        base_config = merge(base_config, layer)
    return validate(base_config)


def dotted_keys(nested: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        out += dotted_keys(value, dotted + ".") if isinstance(value, dict) and value else [dotted]
    return out


def check_space_unchanged(options: SearchOptions, exp_dir: Path) -> list[dict]:
    """A resumed search runs the space it began with: its sampler was built from it. A space file edited since is
    refused, naming it, unless --allow-space-change (the change is then recorded and printed). Returns the
    search's record of space changes."""
    record = exp_dir / RUN_FILE
    if not options.resume or not record.exists():
        return []
    saved = json.loads(record.read_text())
    changes = list(saved.get("space_changes", []))
    before, now = saved.get("space_text"), options.space_path().read_text()
    if before is None or before == now:
        return changes
    if not options.allow_space_change:
        raise ConfigError(f"{options.space_path()} changed since experiment {options.name} began (its sampler still "
                          f"draws the old choices): restore it, start a new search, or resume with "
                          f"--allow-space-change to run the rest under the new file (the change is recorded)")
    change = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "space": str(options.space_path()), "before": before}
    print(f"[hdmap] --allow-space-change: {options.space_path()} differs from the space this search began with; "
          f"the rest of it runs under the new file (recorded in {record.name})", file=sys.stderr)
    return changes + [change]


def note_ray_left_behind(exp_dir: Path) -> None:
    """Say so when the last run of this search ended without stopping its Ray cluster (kill -9, a crash)."""
    from hdmap.tune.ray_reaper import RECORD

    record = exp_dir / RECORD
    if record.exists():
        ended = json.loads(record.read_text())
        print(f"[hdmap] note: an earlier run of this search (pid {ended['driver_pid']}) ended without stopping its Ray "
              f"cluster; hdmap ended the {len(ended['processes'])} Ray process(es) it left at {ended['ended_at']} "
              f"({record})", file=sys.stderr)


VERSIONED = ("ray", "optuna", "torch")


def installed_versions() -> dict:
    """The versions a search's sampling and trials depend on (recorded in hdmap_search.json)."""
    from importlib.metadata import version

    return {name: version(name) for name in VERSIONED}


def note_other_versions(saved: dict) -> None:
    """A search resumed under other Ray / Optuna / torch versions than it began with: said (its sampler's flags are
    fixed, TPE_SETTINGS, but its implementation may differ)."""
    now = installed_versions()
    changed = [f"{name} {saved[name]} -> {now[name]}" for name in VERSIONED if saved.get(name) not in (None, now[name])]
    if changed:
        print(f"[hdmap] note: this search began under other versions ({', '.join(changed)}): the trials from here on "
              f"may sample and score differently", file=sys.stderr)


def check_resume_target(options: SearchOptions, saved: dict) -> None:
    """A resume acts on the folder and data it is given, or is refused naming the difference: Ray keeps the path a
    search began in (resuming a copy would grow the original), and the trials read the data the search began with."""
    began = saved.get("experiment_dir")
    here = experiment_dir(options)
    if began and Path(began) != here:
        raise ConfigError(f"--resume {here}: this search began in {began}, and Ray would write the resumed trials "
                          f"there, not here: resume it where it began (or move it back), or start a new search")
    if options.data_root and Path(options.data_root).resolve() != Path(saved.get("data_root") or "").resolve():
        raise ConfigError(f"--resume --data-root {options.data_root}: this search began on {saved.get('data_root')}; "
                          f"its trials and split belong to that data: resume without --data-root, or start a new "
                          f"search on the other data")


def check_optuna_storage(url: str | None) -> None:
    """An --optuna-storage URL SQLAlchemy cannot open is named before Ray starts."""
    if not url:
        return
    from sqlalchemy.engine import make_url

    try:
        make_url(url).get_dialect()
    except Exception as error:  # noqa: BLE001 - SQLAlchemy raises several kinds; each ends here named
        raise ConfigError(f"--optuna-storage {url}: not a database URL SQLAlchemy can open ({type(error).__name__}: "
                          f"{error}); e.g. sqlite:////shared/runs/study.db or postgresql://user@host/db") from None


def check_storage(storage: str) -> None:
    """--storage is a folder every node sees; a URL (s3://, gs://, ...) would be taken for a local folder named
    `s3:`: refused, saying what works."""
    if "://" in str(storage):
        raise ConfigError(f"--storage {storage}: a URL is not a storage hdmap can use (it keeps its search records, "
                          f"trial errors and the Optuna database in a folder every node reads and writes): mount the "
                          f"bucket or a shared file system and pass its path")


def check_name(name: str) -> None:
    """An experiment name is one folder inside --storage: a path (`../x`, `a/b`, an absolute path) is refused."""
    if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise ConfigError(f"--name {name!r}: an experiment name is one folder name inside --storage (no '/', '..' or "
                          f"absolute path); use --storage to choose where experiments are kept")


def check_counts(options: SearchOptions) -> None:
    """Counts a search cannot run with (the CLI refuses them too): named, before anything starts."""
    for name, least in (("num_samples", 1), ("max_concurrent", 1), ("repeats", 1), ("max_retries", 0)):
        value = getattr(options, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"--{name.replace('_', '-')} expects an integer >= {least}, got {value!r}")
    if not (isinstance(options.keep_defaults_within, (int, float)) and math.isfinite(options.keep_defaults_within)
            and options.keep_defaults_within >= 0):
        raise ConfigError(f"--keep-defaults-within expects a finite number >= 0 (standard errors), got "
                          f"{options.keep_defaults_within!r}")
    if not options.cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial expects a number > 0, got {options.cpus_per_trial!r}")


def ray_nodes() -> list[dict]:
    import ray

    return ray.nodes() if ray.is_initialized() else []


def ray_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0


def resumed_options(options: SearchOptions) -> SearchOptions:
    """The options a search began with, checked against what the resume asks (its folder, data, trial count) and
    with what a resume may change (retries, dashboard, address, verbosity, trust, more trials)."""
    options.name = options.name or latest_experiment(options.storage)
    saved = json.loads((experiment_dir(options) / RUN_FILE).read_text())
    check_resume_target(options, saved)
    keep = {"resume": True, "retry_failed": options.retry_failed, "dashboard": options.dashboard,
            "address": options.address, "verbose": options.verbose,
            "allow_space_change": options.allow_space_change, "trust_search_files": options.trust_search_files}
    if options.num_samples is not None:  # --resume --num-samples N: the search grows to N trials
        if options.num_samples < saved["options"]["num_samples"]:
            raise ConfigError(f"--num-samples {options.num_samples}: this search was begun with "
                              f"{saved['options']['num_samples']} trials; a resumed search can grow, not shrink "
                              f"(resume without --num-samples to finish it)")
        keep["num_samples"] = options.num_samples
    note_other_versions(saved.get("versions") or {})
    known = {f.name for f in fields(SearchOptions)}  # a record of an older hdmap may hold retired options
    options = SearchOptions(**{**{k: v for k, v in saved["options"].items() if k in known}, **keep})
    return options


def run_search(options: SearchOptions) -> dict:
    """Run (or resume) a search; returns the summary dict (also written to summary.json / summary.md)."""
    from hdmap.data.synthetic_default import ensure_embedded_dataset
    from hdmap.data.domain import load_domain
    from hdmap.tune.data_fit import fit_space_to_data

    check_storage(options.storage)
    check_optuna_storage(options.optuna_storage)
    if options.name is not None:
        check_name(options.name)
    if options.resume:
        options = resumed_options(options)
    if options.num_samples is None:
        options.num_samples = 12 if options.data_root is None else 64
    check_counts(options)
    options.name = options.name or f"{options.model}_domain{options.domain}_{time.strftime('%Y%m%d-%H%M%S')}"
    absolute_paths(options)
    exp_dir = experiment_dir(options)
    if options.resume:
        note_ray_left_behind(exp_dir)
    space_changes = check_space_unchanged(options, exp_dir)
    space = load_space(options.space_path())
    metric = options.metric or space.metric
    root = options.data_root or str(ensure_embedded_dataset())
    base_config = space.base_config(real_data=options.data_root is not None, backbone=options.backbone)
    fit_space_to_backbone(space, base_config, options.backbone)
    base_config = with_base_settings(base_config, space, options)
    kind = kind_of(base_config)
    if options.repeats > 1 and not kind.supports_repeats:
        raise ConfigError(f"--repeats averages reference/coreset seeds of PatchCore trials; {kind.name} trials have "
                          f"none (search their seed setting instead)")
    searched_split = [p.key for p in space.params if p.key == "split" or p.key.startswith("split.")]
    if searched_split:
        raise ConfigError(f"{options.space_path()}: the space searches {', '.join(searched_split)}; every trial must "
                          f"be scored on the same tune maps: set the split in `fixed: {{split: ...}}` instead")
    split = base_config["split"]  # the split's one home: the settings (a space's fixed split, or the defaults)
    split_path = exp_dir / "split.json"  # a resumed search keeps its split; a new one is saved once checks pass
    data = load_domain(root, options.domain, split_path if split_path.exists() else None, split["tune_fraction"],
                       split["seed"], options.condition_csv, condition_csv_partial=options.condition_csv_partial,
                       ignore_other_files=options.ignore_other_files, allow_duplicates=options.allow_duplicates)
    fit_space_to_data(space, base_config, data)  # no trial is spent on a choice this data cannot hold
    starts = start_points(space, base_config, options.start)
    if kind.preflight:  # e.g. build the backbone: missing weights end the command in one line before Ray starts
        kind.preflight(settings_of(base_config))
    if kind_of(base_config).preflight and not options.resume:  # a kind with a backbone: what its cache will hold
        from hdmap.features.cache import default_cache_dir
        from hdmap.tune.cache_estimate import say_cache_needs

        needs = say_cache_needs(space, base_config, space_taps(space, base_config), len(data.train) + len(data.test),
                                Path(options.cache_dir or default_cache_dir()), enabled=not options.no_cache)
        if needs:
            space.notes.append(f"feature cache: up to {needs['total_gb']:.1f} GB ({needs['settings']} input "
                               f"setting(s)), {needs['free_gb']:.0f} GB free at the start")
    exp_dir.mkdir(parents=True, exist_ok=True)
    with one_search_at_a_time(exp_dir):
        return _run_locked(options, exp_dir, space, metric, root, base_config, split_path, data, starts,
                           space_changes)


@contextmanager
def one_search_at_a_time(exp_dir: Path):
    """The experiment's lock, held for the whole search: a second `hdmap tune` on the same --storage and --name
    (or a --resume while it runs) is refused, naming the process that runs it."""
    from hdmap.file_lock import LockHeldError, locked

    try:
        with locked(exp_dir / ".search.lock", wait=False):
            yield
    except LockHeldError as error:
        raise ConfigError(f"experiment {exp_dir} is being run by another hdmap tune ("
                          f"{str(error).split('held by ')[-1]}): wait for it to end, or choose another --name (if that "
                          f"process is gone, e.g. its node died, delete {exp_dir / '.search.lock'})") from None


def _run_locked(options: SearchOptions, exp_dir: Path, space, metric: str, root: str, base_config: dict,
                split_path: Path, data, starts: list[dict], space_changes: list[dict]) -> dict:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from hdmap.tune.growable_search import GrowableSearch, raise_restored_budget
    from hdmap.tune.spaces import TPE_SETTINGS, optuna_search

    start_ray(options, exp_dir)
    # before the search's records are written: a request no node can place is refused, leaving no search to resume
    trainable = build_trainable(options, base_config, metric, split_path, root, space_taps(space, base_config),
                                space, len(data.train))
    if not split_path.exists():
        data.split.save(split_path)
    write_text_atomic(exp_dir / RUN_FILE, json.dumps({"options": asdict(options), "data_root": root,
                                                      "experiment_dir": str(exp_dir),
                                                      "sampler": {"class": "TPESampler", "seed": options.seed,
                                                                  **TPE_SETTINGS},
                                                      "versions": installed_versions(),
                                                      "base_config": base_config, "metric": metric,
                                                      "start_points": starts, "space_notes": space.notes,
                                                      "space_text": options.space_path().read_text(),
                                                      "space_changes": space_changes},
                                                     indent=2))
    if options.resume and tune.Tuner.can_restore(str(exp_dir)):
        check_search_files(exp_dir, options.trust_search_files)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=options.retry_failed)
        raise_restored_budget(tuner, options.num_samples)
    else:
        optuna = optuna_search(space, options.seed, points=[s["point"] for s in starts],
                               storage_url=options.study_storage(exp_dir), study_name=options.name)
        searcher = GrowableSearch(ConcurrencyLimiter(optuna, max_concurrent=options.max_concurrent))
        scheduler = make_scheduler(space, base_config)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=options.num_samples, scheduler=scheduler,
                                        metric="objective", mode="max",
                                        reuse_actors=True),  # a worker keeps its imports, maps and backbones
            run_config=tune.RunConfig(name=options.name, storage_path=str(exp_dir.parent),
                                      failure_config=tune.FailureConfig(max_failures=options.max_retries,
                                                                        fail_fast=False),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      verbose=options.verbose))
    try:
        results = tuner.fit()
    finally:  # however the search ends: a resume checks Ray's files against this record
        record_search_files(exp_dir)
    from hdmap.tune.summary import summarise

    return summarise(results, exp_dir, metric, options, starts, space, expected=options.num_samples,
                     study={"storage": options.study_storage(exp_dir), "study_name": options.name})
