"""`hdmap predict RUN MAPS... --out DIR`: apply a fitted run (a search's best trial or `--trial`, a fit-eval run
folder, a .ckpt) to new, unlabelled maps: each map's score, the run's tune threshold, whether it is anomalous, the
condition the gate sent it to and the row (meshing position of the damaged tooth) and columns of its strongest
anomaly: DIR/predictions.csv, DIR/summary.md, a histogram and anomaly-map images of the flagged maps."""
from __future__ import annotations

import sys
from pathlib import Path

from hdmap.jobs.checkpoints import find_checkpoint


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="score new maps with a fitted run: anomalous or not, and on which row",
                       description=__doc__)
    p.add_argument("target", metavar="RUN", help="a search folder (runs/tune/<experiment>), a run folder or a .ckpt file")
    p.add_argument("maps", metavar="MAPS", nargs="+",
                   help="folders of maps (every .tif/.tiff below them), map files, or text files listing map paths")
    p.add_argument("--out", required=True, help="a new folder (or one holding predictions, with --overwrite)")
    p.add_argument("--trial", help="trial id of a search (default: its best trial)")
    p.add_argument("--overwrite", action="store_true", help="replace the predictions --out holds")
    p.add_argument("--skip-bad", action="store_true",
                   help="score the other maps when one cannot be scored (listed in summary.md); default: exit 2")
    p.add_argument("--images", type=int, default=24, metavar="N",
                   help="anomaly-map images of at most N anomalous maps (default 24)")
    p.add_argument("--no-images", action="store_true", help="no anomaly-map images")
    p.add_argument("--batch", type=int, default=256, help="maps scored at a time (memory is bounded by it)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--data-root", help="the run's data root, if it moved since the fit (for the train-map check "
                                       "and few-shot FE-CLIP)")
    p.add_argument("--cache-dir", help="feature cache (default $HDMAP_CACHE or ~/.cache/hdmap/features)")
    p.set_defaults(run=run_predict)


def run_predict(args) -> int:
    from hdmap.config import ConfigError
    from hdmap.jobs.predict import PredictOptions, predict

    for flag, value in (("--batch", args.batch), ("--images", args.images)):
        if value < (1 if flag == "--batch" else 0):
            raise ConfigError(f"{flag} expects an integer >= {1 if flag == '--batch' else 0}, got {value}")
    checkpoint = find_checkpoint(Path(args.target), args.trial)
    options = PredictOptions(checkpoint, args.maps, Path(args.out), args.batch, args.device,
                             0 if args.no_images else args.images, args.skip_bad, args.overwrite, args.data_root,
                             args.cache_dir, command="hdmap " + " ".join(sys.argv[1:]))
    counts = predict(options)
    print(f"checkpoint {checkpoint} (model kind {counts['kind']}, threshold from its tune maps {counts['threshold']:.6g})")
    print(f"{counts['maps']} maps scored, {counts['flagged']} anomalous"
          + (f", {len(counts['skipped'])} skipped (listed in summary.md)" if counts["skipped"] else "")
          + (f"; {counts['in_train']} were train maps of the run (marked)" if counts["in_train"] else ""))
    print(f"wrote {args.out}/predictions.csv and summary.md")
    return 0
