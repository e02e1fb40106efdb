"""Do FE-CLIP's trained parts learn band anomalies? A CPU check without CLIP weights: a small randomly
initialised CLIP, variant 1 (adapters + linear map trained on bands synthesised on the domain's train normals)
against its own untrained baseline (lambda = 0, nothing trained) and against the linear map trained alone
(lambda = 0: the adapters are the identity) and the adapters trained alone (the linear map frozen at its seeded
initial weights: linear_lr = 0), on tune and holdout AUROC, over several seeds.

    python experiments/feclip_learns_bands.py                  # embedded synthetic domain C, ~5 min on 2 cores
    python experiments/feclip_learns_bands.py --fast           # tests: 1 seed, 1 epoch
Writes experiments/results/feclip_learns_bands.md. Nothing here says how FE-CLIP with real CLIP weights does.
"""
from __future__ import annotations

import copy

import numpy as np
from tqdm import tqdm

from hdmap.evaluation.results_file import markdown_table
from hdmap.kinds.feclip.model import describe_clip
from hdmap.config import merge, parse_set
from hdmap.kinds.registry import default_config, settings_of, validate
from hdmap.kinds.feclip.pipeline import fit_and_score_feclip
from study import Study, study_parser

SMALL_CLIP = {"clip_weights": "none", "taps": [1, 2, 3, 4],
              "clip_kwargs": {"embed_dim": 32,
                              "vision_cfg": {"layers": 4, "width": 64, "patch_size": 8, "image_size": 64,
                                             "head_width": 32},
                              "text_cfg": {"layers": 1, "width": 32, "heads": 2, "context_length": 77,
                                           "vocab_size": 49408}}}
UNTRAINED = {"feclip": {"mix": 0.0}, "train": {"source": "none"}}
VARIANTS = [
    ("untrained baseline (lambda = 0, nothing trained)", UNTRAINED),
    ("linear map only (lambda = 0, trained)", {"feclip": {"mix": 0.0}}),
    ("variant 1, LFS mean (paper text)", {"feclip": {"lfs_stat": "mean"}}),
    ("variant 1, LFS abs_mean", {"feclip": {"lfs_stat": "abs_mean"}}),
    ("variant 1, LFS log_energy (F3-Net)", {"feclip": {"lfs_stat": "log_energy"}}),
    ("adapters only (linear map frozen), LFS abs_mean", {"feclip": {"lfs_stat": "abs_mean"},
                                                         "train": {"linear_lr": 0.0}}),
    ("adapters only (linear map frozen), LFS abs_mean, lambda 0.5", {"feclip": {"lfs_stat": "abs_mean", "mix": 0.5},
                                                                     "train": {"linear_lr": 0.0}}),
]
COLUMNS = ["model", "image score", "tune AUROC %", "holdout AUROC %", "holdout cold AUROC %", "seeds"]


def mean_sd(values: list[float]) -> str:
    values = 100 * np.asarray(values, float)
    return f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def reading(tune_means: dict, scores: list[str]) -> list[str]:
    """Differences the table supports, computed from it (tune AUROC, mean over seeds, points)."""
    lines = ["Computed from the table (tune AUROC, mean over seeds):", ""]
    for score in scores:
        best_name, best = max(((n, tune_means[score, n]) for n, _ in VARIANTS if n.startswith("variant 1")),
                              key=lambda item: item[1])
        untrained = tune_means[score, VARIANTS[0][0]]
        linear = tune_means[score, VARIANTS[1][0]]
        adapters_name, adapters = max(((n, tune_means[score, n]) for n, _ in VARIANTS if n.startswith("adapters")),
                                      key=lambda item: item[1])
        lines.append(f"- image score `{score}`: best variant 1 ({best_name}) {best - untrained:+.1f} points against the "
                     f"untrained baseline, {best - linear:+.1f} against the linear map trained alone; adapters "
                     f"trained alone ({adapters_name}) {adapters - untrained:+.1f} against the untrained baseline")
    return lines


def main(argv=None) -> int:
    p = study_parser(__doc__, "feclip_learns_bands")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--scores", nargs="+", default=["cls", "map_max"], help="feclip.image_score values to compare")
    args = p.parse_args(argv)
    if args.fast:
        args.seeds, args.epochs = 1, 1
    study = Study(args)
    data = study.domain()
    base = merge(default_config(model_name="feclip"),
                 {"image_size": 64, "feclip": SMALL_CLIP, "train": {"epochs": args.epochs, "lr": 3e-3,
                                                                     "linear_lr": 3e-3}})
    base = validate(merge(base, parse_set(args.set)))
    rows, tune_means, runs = [], {}, [(s, n, u) for s in args.scores for n, u in VARIANTS]
    for score, name, update in tqdm(runs, desc="FE-CLIP variants"):
        results = []
        for seed in range(args.seeds):
            config = merge(merge(copy.deepcopy(base), update), {"feclip": {"image_score": score},
                                                                "train": {"seed": seed}})
            _, _, metrics = fit_and_score_feclip(settings_of(config), data, progress=False)
            results.append(metrics)
        tune_means[score, name] = 100 * float(np.mean([m["tune"]["auroc"] for m in results]))
        rows.append({"model": name, "image score": score,
                     "tune AUROC %": mean_sd([m["tune"]["auroc"] for m in results]),
                     "holdout AUROC %": mean_sd([m["holdout"]["auroc"] for m in results]),
                     "holdout cold AUROC %": mean_sd([m["holdout"]["by_condition"]["cold"]["auroc"] for m in results]),
                     "seeds": args.seeds})
    train = base["train"]
    lines = study.header(f"FE-CLIP learns band anomalies? Domain {data.domain}, small random CLIP, CPU",
                         describe_clip(base["feclip"]) + f", taps {list(base['feclip']['taps'])}")
    lines += [f"- training: {train['epochs']} epochs, batch {train['batch_size']}, lr {train['lr']} (linear map "
              f"{train['linear_lr']}), lambda {base['feclip']['mix']} for variant 1, fault fraction "
              f"{train['fault_fraction']}; seeds 0..{args.seeds - 1} (mean ± sd over seeds)",
              "- image score `cls`: the paper's class-token score; `map_max`: the largest value of the anomaly map",
              "- random CLIP weights: this shows whether the trained parts pick up bands, not how FE-CLIP does", ""]
    study.write(lines + markdown_table(rows, COLUMNS) + [""] + reading(tune_means, args.scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
