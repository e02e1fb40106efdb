"""`hdmap synth`: write a synthetic HDMAP data set in the ROOT/domain_X layout."""
from __future__ import annotations

import sys


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic HDMAP data set in the ROOT/domain_X layout")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-test", type=int, default=200, help="maps per test class (good, fault), half cold half warm")
    p.add_argument("--domains", default="ABCD")
    p.add_argument("--full", action="store_true", help="1000 train, 1000 good + 1000 fault per domain")
    p.add_argument("--warm-gain", type=float, default=1.4)
    p.add_argument("--contrast-scale", type=float, default=1.0, help="scales every domain's (band contrast - 1)")
    p.add_argument("--noise-scale", type=float, default=1.0)
    p.add_argument("--defect", default="band", choices=["band", "spot", "ridge"],
                   help="the faults drawn: band (a damaged tooth, the default) or a defect that is not a band")
    p.add_argument("--preview", help="also write a PNG of a few maps per domain")
    p.set_defaults(run=run_synth)


def run_synth(args) -> int:
    from hdmap.data.preview import plot_domain_samples
    from hdmap.data.synth import SynthConfig, write_dataset

    n_train, n_test = (1000, 1000) if args.full else (args.n_train, args.n_test)
    config = SynthConfig(n_train=n_train, n_test=n_test, seed=args.seed, domains=args.domains,
                         warm_gain=args.warm_gain, contrast_scale=args.contrast_scale, noise_scale=args.noise_scale,
                         defect=args.defect)
    write_dataset(args.out, config, progress=lambda d: print(f"domain_{d} written", file=sys.stderr))
    if args.preview:
        plot_domain_samples(args.out, args.domains, args.preview)
    print(args.out)
    return 0
