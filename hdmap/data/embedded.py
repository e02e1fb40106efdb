"""The embedded default data set: synthetic HDMAP generated on first use into a cache folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hdmap.data.synth import SynthConfig, write_dataset

EMBEDDED = SynthConfig(n_train=200, n_test=200, seed=0, domains="ABCD")
# Domain C with half the fault contrast (cold bands ~1.15x, warm ~1.23x): the faint-cold-fault study set.
HARD_COLD = SynthConfig(n_train=200, n_test=200, seed=1, domains="C", contrast_scale=0.5)


def synthetic_root(config: SynthConfig) -> Path:
    base = Path(os.environ.get("HDMAP_DATA_CACHE", Path.home() / ".cache" / "hdmap" / "synthetic"))
    extra = "" if config.contrast_scale == 1.0 else f"_contrast{config.contrast_scale:g}"
    return base / f"seed{config.seed}_train{config.n_train}_test{config.n_test}{extra}_{config.domains}"


def embedded_root() -> Path:
    base = Path(os.environ.get("HDMAP_DATA_CACHE", Path.home() / ".cache" / "hdmap" / "synthetic"))
    return base / f"seed{EMBEDDED.seed}_train{EMBEDDED.n_train}_test{EMBEDDED.n_test}"


def ensure_synthetic(config: SynthConfig) -> Path:
    """Path of a synthetic set written (once) into the synthetic data cache."""
    root = synthetic_root(config)
    if not (root / ".complete").exists():
        write_dataset(root, config)
        (root / ".complete").write_text("ok\n")
    return root


def ensure_embedded_dataset(quiet: bool = False) -> Path:
    """Path of the embedded synthetic data, written there first if missing (and said so)."""
    root = embedded_root()
    done = root / ".complete"
    if not quiet:
        print(f"[hdmap] no --data-root given: using the embedded SYNTHETIC HDMAP data at {root}", file=sys.stderr)
    if not done.exists():
        if not quiet:
            print("[hdmap] generating it now (first use, a few seconds)", file=sys.stderr)
        write_dataset(root, EMBEDDED)
        done.write_text("ok\n")
    return root
