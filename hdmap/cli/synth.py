"""`hdmap synth`: write a synthetic HDMAP data set in the ROOT/domain_X layout."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from hdmap.data.band_shapes import EXTENTS, MODES, PROFILES


def band_widths(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--band-widths expects LOW-HIGH rows (e.g. 1-3), got {text!r}") from None


def at_least(least: int):
    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"expects an integer >= {least}, got {text!r}")
        return value
    return count


def clear_domains(out: Path, domains: str, overwrite: bool) -> None:
    """A domain folder OUT already holds would mix its maps with the new ones: refused, or removed with --overwrite."""
    folders = [out / f"domain_{d}" for d in domains]
    held = [folder for folder in folders if folder.is_dir() and any(folder.iterdir())]
    if held and not overwrite:
        raise FileExistsError(f"{held[0]} already holds a data set (new maps would mix with its files): choose another "
                              f"OUT, or --overwrite to replace {', '.join(p.name for p in held)}")
    for folder in held:
        shutil.rmtree(folder)


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic HDMAP data set in the ROOT/domain_X layout")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=at_least(1), default=200)
    p.add_argument("--n-test", type=at_least(2), default=200,
                   help="maps per test class (good, fault), half cold half warm")
    p.add_argument("--domains", default="ABCD")
    p.add_argument("--full", action="store_true", help="1000 train, 1000 good + 1000 fault per domain")
    p.add_argument("--warm-gain", type=float, default=1.4)
    p.add_argument("--contrast-scale", type=float, default=1.0, help="scales every domain's (band contrast - 1)")
    p.add_argument("--noise-scale", type=float, default=1.0)
    p.add_argument("--defect", default="band", choices=["band", "spot", "ridge"],
                   help="the faults drawn: band (a damaged tooth, the default) or a defect that is not a band")
    p.add_argument("--row-drift", type=float, default=0.0,
                   help="sd of each map's own smooth row gain (a gain drifting from map to map); 0 = none")
    p.add_argument("--column-drift", type=float, default=0.0, help="the same over the columns")
    p.add_argument("--band-widths", type=band_widths, default=(1, 2),
                   help="band widths in rows, LOW-HIGH (1-3: up to three rows)")
    p.add_argument("--band-profile", default="flat", choices=PROFILES,
                   help="soft: the rows just outside a band get part of its contrast")
    p.add_argument("--band-extent", default="contiguous", choices=EXTENTS,
                   help="along the row: one run (contiguous), a run broken into pieces, a train of short pulses, "
                        "or each map one of the three (mixed)")
    p.add_argument("--band-mode", default="multiplicative", choices=MODES,
                   help="the band multiplies the map, or adds a share of its mean level")
    p.add_argument("--preview", help="also write a PNG of a few maps per domain")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the domain folders OUT already holds (else such a folder is refused)")
    p.set_defaults(run=run_synth)


def run_synth(args) -> int:
    from hdmap.data.preview import plot_domain_samples
    from hdmap.data.band_shapes import BandShape
    from hdmap.data.synth import SynthConfig, check_domains, write_dataset

    n_train, n_test = (1000, 1000) if args.full else (args.n_train, args.n_test)
    band = BandShape(args.band_widths, args.band_profile, args.band_extent, args.band_mode)  # checked before any file
    check_domains(args.domains)
    clear_domains(Path(args.out), args.domains, args.overwrite)
    config = SynthConfig(n_train=n_train, n_test=n_test, seed=args.seed, domains=args.domains,
                         warm_gain=args.warm_gain, contrast_scale=args.contrast_scale, noise_scale=args.noise_scale,
                         defect=args.defect, row_drift=args.row_drift, column_drift=args.column_drift,
                         band=band)
    write_dataset(args.out, config, progress=lambda d: print(f"domain_{d} written", file=sys.stderr))
    if args.preview:
        plot_domain_samples(args.out, args.domains, args.preview)
    print(args.out)
    return 0
