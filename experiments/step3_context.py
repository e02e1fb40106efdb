"""Step 3 — the horizontal-context descriptor: context k (each patch + the mean of its 2k+1 row neighbours),
which taps, and its interaction with gating (mixed vs gated banks), at equal shots.

    python experiments/step3_context.py [--data-root ROOT] [--ks 0 1 2 3 4] [--taps 2,3 1,2]
Writes experiments/results/step3_context.md (holdout numbers, threshold from tune).
"""
from __future__ import annotations

import copy
import itertools

from rich.progress import track

from hdmap.evaluation.results_file import describe_backbone, markdown_table, pct
from hdmap.features.cache import FeatureCache
from hdmap.kinds.registry import validate
from hdmap.kinds.registry import fit_and_score
from study import Study, study_parser

COLUMNS = ["taps", "bank", "context k", "holdout acc %", "oracle acc %", "AUROC %", "cold AUROC %", "warm AUROC %"]


def main(argv=None) -> int:
    p = study_parser(__doc__, "step3_context")
    p.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--taps", nargs="+", default=None, help="tap sets like 2,3 (default: the config's and 1,2)")
    p.add_argument("--banks", nargs="+", default=["mixed", "gated"])
    p.add_argument("--shots", type=int, default=16)
    study = Study(p.parse_args(argv), raw_inputs=True)  # the context question on the raw maps
    data = study.domain()
    cache = FeatureCache(study.args.cache_dir, progress=False)
    default_taps = ",".join(map(str, study.base["backbone"]["taps"]))
    tap_sets = study.args.taps or ([default_taps] if study.args.fast else [default_taps, "1,2"])
    rows = []
    for taps, bank, k in track(list(itertools.product(tap_sets, study.args.banks, study.args.ks)), description="context"):
        config = copy.deepcopy(study.base)
        config["backbone"]["taps"] = [int(t) for t in taps.split(",")]
        config["model"].update(bank_mode=bank, shots=study.args.shots, context_ks=[0, k] if k else [0],
                               reference_sampling="per_condition")
        _, _, metrics = fit_and_score(validate(config), data, cache)
        hold = metrics["holdout"]
        rows.append({"taps": taps, "bank": bank, "context k": k, "holdout acc %": pct(hold["accuracy"]),
                     "oracle acc %": pct(hold["accuracy_oracle"]), "AUROC %": pct(hold["auroc"]),
                     "cold AUROC %": pct(hold["by_condition"]["cold"]["auroc"]),
                     "warm AUROC %": pct(hold["by_condition"]["warm"]["auroc"])})
    base = study.base["backbone"]
    ran = describe_backbone(base["name"], base["weights"], " and ".join(f"[{t}]" for t in tap_sets),
                            base["model_kwargs"])
    lines = study.header(f"Step 3: horizontal context x taps x gating, domain {data.domain}", ran)
    lines += [f"{study.args.shots} shots per condition (intensity gate assigns train), holdout n = "
              f"{len(data.split.holdout)}, threshold from tune (n = {len(data.split.tune)}).", ""]
    study.write(lines + markdown_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
