"""Reload the best (or a chosen) trial's checkpoint of a search and report holdout: a thin wrapper of `hdmap eval`.

    python experiments/eval_best.py runs/tune/<experiment> [--trial TRIAL_ID] [--out DIR] [--data-root ROOT]
"""
import sys

from hdmap.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
