"""Step 4 — FE-CLIP on HDMAP: zero-shot with adapters trained on MVTec/VisA (--checkpoint from
experiments/feclip_benchmark.py), with band-synthesis training on the domain's train normals (variant 1), and
with the condition-aware few-shot memory (variant 2).

    python experiments/step4_feclip.py --data-root ROOT [--checkpoint feclip_mvtec.ckpt]     # GPU, CLIP weights
    python experiments/step4_feclip.py --fast      # tiny random CLIP: proves the pipeline only, numbers mean nothing
Writes experiments/results/step4_feclip.md.
"""
from __future__ import annotations

import copy

from hdmap.evaluation.results_file import markdown_table, pct
from hdmap.kinds.feclip.model import TINY_CLIP, describe_clip
from hdmap.config import merge, parse_set
from hdmap.kinds.registry import default_config, settings_of, validate
from hdmap.kinds.feclip.pipeline import fit_and_score_feclip
from study import Study, study_parser

COLUMNS = ["variant", "holdout acc %", "oracle acc %", "AUROC %", "cold AUROC %", "warm AUROC %"]


def main(argv=None) -> int:
    p = study_parser(__doc__, "step4_feclip")
    p.add_argument("--checkpoint", help="FE-CLIP adapters trained on MVTec AD / VisA (zero-shot row)")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args(argv)
    study = Study(args)
    base = default_config(model_name="feclip")
    if args.fast:
        base = merge(base, {"feclip": TINY_CLIP, "image_size": 32, "train": {"epochs": 1}})
    base = validate(merge(base, parse_set(args.set)))
    if args.epochs:
        base["train"]["epochs"] = args.epochs
    data = study.domain()
    variants = []
    if args.checkpoint:
        variants.append(("zero-shot (MVTec/VisA-trained adapters)",
                         {"train": {"source": "checkpoint", "checkpoint": args.checkpoint}}))
    variants.append(("variant 1: band-synthesis training", {"train": {"source": "hdmap_bands"}}))
    variants.append((f"variant 1 + 2: + few-shot gated memory ({args.shots}/condition)",
                     {"train": {"source": "hdmap_bands"}, "fewshot": {"shots": args.shots}}))
    rows = []
    for name, update in variants:
        config = settings_of(merge(copy.deepcopy(base), update))
        _, _, metrics = fit_and_score_feclip(config, data, progress=False)
        hold = metrics["holdout"]
        rows.append({"variant": name, "holdout acc %": pct(hold["accuracy"]), "oracle acc %": pct(hold["accuracy_oracle"]),
                     "AUROC %": pct(hold["auroc"]), "cold AUROC %": pct(hold["by_condition"]["cold"]["auroc"]),
                     "warm AUROC %": pct(hold["by_condition"]["warm"]["auroc"])})
    clip = base["feclip"]
    ran = (f"{describe_clip(clip)}, taps {list(clip['taps'])}, lambda {clip['mix']}, LFS {clip['lfs_stat']}, "
           f"image score {clip['image_score']}, seed {base['train']['seed']}")
    lines = study.header(f"Step 4: FE-CLIP on HDMAP, domain {data.domain}", ran)
    if base["feclip"]["clip_weights"] == "none":
        lines += ["**Tiny randomly initialised CLIP: this file only proves the pipeline runs; its numbers say nothing "
                  "about FE-CLIP.**", ""]
    if not args.checkpoint:
        lines += ["No --checkpoint given: the zero-shot row (adapters trained on MVTec AD / VisA) is not run.", ""]
    study.write(lines + markdown_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
