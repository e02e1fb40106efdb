"""Search the detector settings that maximise domain C accuracy: a thin wrapper of `hdmap tune` (same options).

    python experiments/tune_domainC.py            # embedded synthetic data, offline backbone, 12 trials
    python experiments/tune_domainC.py --data-root ROOT --gpus-per-trial 0.25 --max-concurrent 32
"""
import sys

from hdmap.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
