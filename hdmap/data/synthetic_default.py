"""The embedded default data set: synthetic HDMAP generated on first use into a cache folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hdmap.data.band_shapes import BandShape
from hdmap.data.synth import SynthConfig, write_dataset

EMBEDDED = SynthConfig(n_train=200, n_test=200, seed=0, domains="ABCD")
# Domain C with half the fault contrast (cold bands ~1.15x, warm ~1.23x): the faint-cold-fault study set.
HARD_COLD = SynthConfig(n_train=200, n_test=200, seed=1, domains="C", contrast_scale=0.5)


def synthetic_cache() -> Path:
    return Path(os.environ.get("HDMAP_DATA_CACHE", Path.home() / ".cache" / "hdmap" / "synthetic"))


def synthetic_root(config: SynthConfig) -> Path:
    extra = "" if config.contrast_scale == 1.0 else f"_contrast{config.contrast_scale:g}"
    extra += "" if config.defect == "band" else f"_{config.defect}"
    extra += "" if config.row_drift == 0 else f"_rowdrift{config.row_drift:g}"
    extra += "" if config.column_drift == 0 else f"_coldrift{config.column_drift:g}"
    shape = config.band
    if shape != BandShape():
        extra += f"_w{shape.widths[0]}-{shape.widths[1]}_{shape.profile}_{shape.extent}_{shape.mode}"
    return synthetic_cache() / f"seed{config.seed}_train{config.n_train}_test{config.n_test}{extra}_{config.domains}"


def embedded_root() -> Path:
    return synthetic_cache() / f"seed{EMBEDDED.seed}_train{EMBEDDED.n_train}_test{EMBEDDED.n_test}"


def write_once(root: Path, config: SynthConfig) -> None:
    """Write the synthetic set into `root` unless a complete one is there."""
    done = root / ".complete"
    if not done.exists():
        write_dataset(root, config)
        done.write_text("ok\n")


def ensure_synthetic(config: SynthConfig) -> Path:
    """Path of a synthetic set written (once) into the synthetic data cache."""
    root = synthetic_root(config)
    write_once(root, config)
    return root


def ensure_embedded_dataset(quiet: bool = False) -> Path:
    """Path of the embedded synthetic data, written there first if missing (and said so)."""
    root = embedded_root()
    if not quiet:
        print(f"[hdmap] no --data-root given: using the embedded SYNTHETIC HDMAP data at {root}", file=sys.stderr)
        if not (root / ".complete").exists():
            print("[hdmap] generating it now (first use, a few seconds)", file=sys.stderr)
    write_once(root, EMBEDDED)
    return root
