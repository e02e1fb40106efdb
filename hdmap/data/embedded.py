"""The embedded default data set: synthetic HDMAP generated on first use into a cache folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hdmap.data.synth import SynthConfig, write_dataset

EMBEDDED = SynthConfig(n_train=200, n_test=200, seed=0, domains="ABCD")


def embedded_root() -> Path:
    base = Path(os.environ.get("HDMAP_DATA_CACHE", Path.home() / ".cache" / "hdmap" / "synthetic"))
    return base / f"seed{EMBEDDED.seed}_train{EMBEDDED.n_train}_test{EMBEDDED.n_test}"


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
