"""FE-CLIP cross-dataset benchmark: train the adapters on one data set's test split, evaluate zero-shot on the
other, per category and macro-averaged, beside the paper's numbers.

    python experiments/feclip_benchmark.py --train-on visa --eval-on mvtec --visa-root VISA --mvtec-root MVTEC
    python experiments/feclip_benchmark.py --train-on mvtec --eval-on visa --visa-root VISA --mvtec-root MVTEC
Needs the CLIP weights (ViT-L-14-336 / openai by name, or --clip-weights FILE) and a GPU for reasonable speed.
Writes experiments/results/feclip_<train>_to_<eval>.md.
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import yaml

from hdmap.data.industrial import READERS, IndustrialDataset
from hdmap.evaluation.results_file import markdown_table, write_results
from hdmap.kinds.feclip.model import describe_clip
from hdmap.kinds.feclip.module import FEClipModule
from hdmap.evaluation.zero_shot_benchmark import PAPER, benchmark_metrics
from hdmap.kinds.feclip.training import predict_feclip, seed_everything, train_feclip

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-on", choices=["visa", "mvtec"], required=True)
    p.add_argument("--eval-on", choices=["visa", "mvtec"], required=True)
    p.add_argument("--visa-root")
    p.add_argument("--mvtec-root")
    p.add_argument("--clip-model", default="ViT-L-14-336")
    p.add_argument("--clip-weights", default="openai", help="open_clip tag, or a local weights file")
    p.add_argument("--model-yaml", help="YAML of further FEClipSettings settings (taps, band, mix, ...)")
    p.add_argument("--image-size", type=int, default=336)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--linear-lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0, help="adapter initialisation and batch order")
    p.add_argument("--out", help="markdown file (default experiments/results/feclip_<train>_to_<eval>.md)")
    p.add_argument("--save-checkpoint", help="where to keep the trained adapters (default runs/feclip_<train>.ckpt)")
    args = p.parse_args(argv)
    if args.train_on == args.eval_on:
        p.error(f"--train-on and --eval-on are both {args.train_on}: training on the evaluation set is not zero-shot "
                f"(the paper trains on one data set and evaluates on the other)")
    roots = {"visa": args.visa_root, "mvtec": args.mvtec_root}
    for name in (args.train_on, args.eval_on):
        if not roots[name]:
            p.error(f"--{name}-root is required for --train-on/--eval-on {name}")
    model = {"clip_model": args.clip_model, "clip_weights": args.clip_weights}
    if args.model_yaml:
        model.update(yaml.safe_load(Path(args.model_yaml).read_text()) or {})
    train_set = IndustrialDataset(READERS[args.train_on](roots[args.train_on], split="test"), args.image_size)
    eval_set = IndustrialDataset(READERS[args.eval_on](roots[args.eval_on], split="test"), args.image_size)
    seed_everything(args.seed)  # before the adapters are built: their initial weights follow the seed
    module = FEClipModule(model=model, lr=args.lr, linear_lr=args.linear_lr)
    train_feclip(module, train_set, args.epochs, args.batch_size, seed=args.seed)
    checkpoint = Path(args.save_checkpoint or f"runs/feclip_{args.train_on}.ckpt")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    module.trainer_free_save(checkpoint)  # for zero-shot HDMAP runs: --set train.checkpoint=...
    per_category, macro = benchmark_metrics(predict_feclip(module, eval_set, args.batch_size))
    columns = ["category", "image AUROC", "image AP", "pixel AUROC", "AUPRO"]
    keys = ["image_auroc", "image_ap", "pixel_auroc", "aupro"]
    rows = [{"category": c, **dict(zip(columns[1:], (m[k] for k in keys)))} for c, m in per_category.items()]
    rows.append({"category": "**macro (ours)**", **dict(zip(columns[1:], (macro[k] for k in keys)))})
    rows.append({"category": "paper (FE-CLIP, ICCV 2025)", **dict(zip(columns[1:], (PAPER[args.eval_on][k] for k in keys)))})
    lines = [f"# FE-CLIP: trained on {args.train_on} (test split), zero-shot on {args.eval_on}", "",
             f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
             f"- CLIP: {describe_clip(model)}, {args.image_size} px, {args.epochs} epochs, "
             f"batch {args.batch_size}, lr {args.lr} (linear map {args.linear_lr}), seed {args.seed}",
             f"- generated {datetime.datetime.now():%Y-%m-%d %H:%M} by this script; numbers in %",
             f"- trained adapters: `{checkpoint}`", ""]
    lines += markdown_table(rows, columns)
    write_results(args.out or RESULTS / f"feclip_{args.train_on}_to_{args.eval_on}.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
