"""Shared set-up of the study scripts (experiments/step*.py): data root, base config, domain data, output."""
from __future__ import annotations

import argparse
from pathlib import Path

from hdmap.data.synthetic_default import ensure_embedded_dataset
from hdmap.evaluation.results_file import describe_backbone, stamp
from hdmap.config import merge, parse_set
from hdmap.kinds.registry import default_config, validate
from hdmap.kinds.patchcore.kind import BASELINE_MODEL
from hdmap.data.domain import load_domain

RESULTS = Path(__file__).resolve().parent / "results"
FAST_BACKBONE = {"name": "dinov2_vits14", "weights": "none", "taps": [0, 1],
                 "model_kwargs": {"depth": 2, "embed_dim": 24, "num_heads": 2}}


def study_parser(description: str, step: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="ROOT with domain_X folders (default: embedded synthetic data)")
    p.add_argument("--domain", default="C")
    p.add_argument("--set", action="append", default=[], help="config override, e.g. backbone.weights=/path.pth")
    p.add_argument("--out", default=str(RESULTS / f"{step}.md"))
    p.add_argument("--cache-dir")
    p.add_argument("--fast", action="store_true", help="tiny random backbone and a small grid (tests)")
    return p


class Study:
    """Resolved inputs of one study run."""

    def __init__(self, args, raw_inputs: bool = False):
        """`raw_inputs`: raw maps and the max image score (BASELINE_MODEL) unless `--set` says so."""
        self.args = args
        self.synthetic = args.data_root is None
        self.root = str(ensure_embedded_dataset()) if self.synthetic else args.data_root
        config = default_config(real_data=not self.synthetic)
        if raw_inputs:
            config = merge(config, {"model": BASELINE_MODEL})
        if args.fast:
            config = merge(config, {"backbone": FAST_BACKBONE, "image_size": 112})
        self.base = validate(merge(config, parse_set(args.set)))
        self.out = Path(args.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)

    def domain(self, domain: str | None = None):
        domain = domain or self.args.domain
        csv = Path(self.root) / f"domain_{domain}" / "train_conditions.csv"  # synthetic truth, for the oracle
        split = self.out.with_name(f"{self.out.stem}.domain{domain}.split.json")
        return load_domain(self.root, domain, split, condition_csv=str(csv) if csv.exists() else None,
                           condition_csv_partial=True)  # train rows only: the file-index rule for test

    def header(self, title: str, backbone: str | None = None) -> list[str]:
        """Title and stamp; `backbone` describes what ran (default: the base config's backbone)."""
        base = self.base["backbone"]
        backbone = backbone or describe_backbone(base["name"], base["weights"], base["taps"], base["model_kwargs"])
        lines = [f"# {title}", ""] + stamp(self.root, backbone, self.synthetic)
        if self.args.fast:
            lines.append("- FAST MODE: tiny random backbone, small grid; numbers only show the script runs")
        return lines + [""]

    def write(self, lines: list[str]) -> None:
        self.out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
