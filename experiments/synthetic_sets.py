"""The synthetic sets of the search and defaults studies: domain C at three fault contrasts, each drawn with
several data seeds. None of these seeds was used to choose a setting before the study that reports it."""
from __future__ import annotations

from hdmap.data.synthetic_default import ensure_synthetic
from hdmap.data.synth import SynthConfig

SETS = {  # name -> contrast_scale (cold band contrast = 1 + 0.3 x scale, warm = 1 + 0.45 x scale)
    "standard C": 1.0,
    "faint C": 0.6,
    "hard-cold C": 0.4,
}
DATA_SEEDS = (11, 12)
N_TRAIN, N_TEST = 200, 100  # train maps; test maps per class (good, fault): a 16-trial search in ~10 min on 2 cores


def synth_config(name: str, seed: int) -> SynthConfig:
    return SynthConfig(n_train=N_TRAIN, n_test=N_TEST, seed=seed, domains="C", contrast_scale=SETS[name])


def set_root(name: str, seed: int) -> str:
    """Path of the set (written once into the synthetic data cache)."""
    return str(ensure_synthetic(synth_config(name, seed)))


def describe_sets(seeds=DATA_SEEDS) -> str:
    parts = [f"{name}: cold bands x{1 + 0.3 * scale:.2f}, warm x{1 + 0.45 * scale:.2f}" for name, scale in SETS.items()]
    return (f"synthetic domain C, {N_TRAIN} train / {N_TEST} good + {N_TEST} fault test maps, data seeds "
            f"{list(seeds)}; " + "; ".join(parts))
