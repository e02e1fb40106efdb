"""Synthetic HDMAP: four domains of gear-meshing maps, cold/warm states, faint horizontal fault bands.

Generative model (per domain, seeded): a base meshing pattern = offset + diagonal meshing ridges + two 2-D
sinusoids with domain-specific frequencies. A map = base with per-map amplitude jitter, times a per-column
gain, plus Gaussian noise. Warm maps are `warm_gain` x brighter AND structurally different (one sinusoid is
phase-shifted and a slow column ramp is added). A fault multiplies one or two adjacent rows (full length or a
partial run of columns) by the domain's band contrast. Every map of a domain is divided by the maximum of its
train maps, so train lies in ~[0, 1] and test may exceed 1. Train mixes cold and warm, unlabelled; test lists
cold maps first (indices 0..n/2-1) then warm.
"""
from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from hdmap.data.band_shapes import BandShape, draw_band, smooth_gain

SHAPE = (31, 95)


@dataclass(frozen=True)
class DomainSpec:
    """Per-domain knobs: fault band contrast in each state and relative noise."""

    contrast_cold: float
    contrast_warm: float
    noise: float


DEFAULT_DOMAINS = {
    "A": DomainSpec(contrast_cold=1.9, contrast_warm=2.1, noise=0.06),
    "B": DomainSpec(contrast_cold=1.7, contrast_warm=1.9, noise=0.07),
    "C": DomainSpec(contrast_cold=1.3, contrast_warm=1.45, noise=0.08),
    "D": DomainSpec(contrast_cold=1.6, contrast_warm=1.75, noise=0.06),
}


@dataclass
class SynthConfig:
    """Sizes, seed and physics knobs; `contrast_scale`/`noise_scale` multiply every domain's values."""

    n_train: int = 200
    n_test: int = 200  # per class (good, fault), half cold half warm
    seed: int = 0
    domains: str = "ABCD"
    warm_gain: float = 1.4
    contrast_scale: float = 1.0
    noise_scale: float = 1.0
    shape: tuple[int, int] = SHAPE
    defect: str = "band"  # band (a damaged tooth) | spot | ridge: defects that are NOT bands, to test detectors on
    specs: dict = field(default_factory=lambda: dict(DEFAULT_DOMAINS))
    row_drift: float = 0.0  # sd of each map's own smooth row gain (1 + drift x a smooth profile over the rows)
    column_drift: float = 0.0  # the same over the columns
    band: BandShape = field(default_factory=BandShape)  # the shape of a fault band (widths, profile, extent, mode)


class DomainGenerator:
    """Draws cold/warm, good/fault maps of one domain (unnormalised)."""

    def __init__(self, domain: str, config: SynthConfig):
        self.spec = config.specs[domain]
        self.config = config
        self.rng = np.random.default_rng([config.seed, zlib.crc32(domain.encode())])
        rows, cols = config.shape
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        g = self.rng
        period = g.uniform(5, 9)
        ridge_slope = g.uniform(0.5, 2.5)
        self.ridges = np.exp(-0.5 * (((c - ridge_slope * r) % period) - period / 2) ** 2 / g.uniform(0.5, 0.9) ** 2)
        self.period, self.ridge_slope = period, ridge_slope
        fr, fc = g.uniform(0.02, 0.12), g.uniform(0.03, 0.15)
        self.wave1 = np.cos(2 * np.pi * (fr * r + fc * c) + g.uniform(0, 2 * np.pi))
        self.wave2_freq = (g.uniform(0.05, 0.2), g.uniform(0.01, 0.06))
        self.wave2_phase = g.uniform(0, 2 * np.pi)
        self.warm_ramp = np.linspace(-1, 1, cols)[None, :] * np.ones((rows, 1)) * g.uniform(0.1, 0.25)
        self.rc = (r, c)

    def _wave2(self, phase_shift: float) -> np.ndarray:
        r, c = self.rc
        fr, fc = self.wave2_freq
        return np.cos(2 * np.pi * (fr * r + fc * c) + self.wave2_phase + phase_shift)

    def draw(self, condition: str, fault: bool) -> tuple[np.ndarray, dict | None]:
        """One map and, for a fault, its band (row, width, col_start, col_end, contrast)."""
        g = self.rng
        warm = condition == "warm"
        a1, a2, a3 = g.normal(1.0, 0.08, size=3)
        base = (0.3 + 1.3 * a1 * self.ridges + 0.1 * a2 * self.wave1
                + 0.08 * a3 * self._wave2(np.pi / 3 if warm else 0.0))
        if warm:
            base = self.config.warm_gain * base * (1.0 + self.warm_ramp)
        column_gain = 1.0 + 0.05 * g.standard_normal(base.shape[1])[None, :]
        image = base * column_gain
        if self.config.row_drift > 0:
            image = image * smooth_gain(image.shape[0], self.config.row_drift, g)[:, None]
        if self.config.column_drift > 0:
            image = image * smooth_gain(image.shape[1], self.config.column_drift, g)[None, :]
        image = image + self.spec.noise * self.config.noise_scale * image.mean() * g.standard_normal(image.shape)
        band = None
        contrast = (self.spec.contrast_warm if warm else self.spec.contrast_cold)
        contrast = 1.0 + (contrast - 1.0) * self.config.contrast_scale
        if fault and self.config.defect != "band":
            defect = self._other_defect(image, contrast)  # in place, before the map is returned
            return np.maximum(image, 0.0).astype(np.float32), defect
        if fault:
            band = draw_band(image, contrast, self.config.band, g)  # in place
        return np.maximum(image, 0.0).astype(np.float32), band


    def _other_defect(self, image: np.ndarray, contrast: float) -> dict:
        """A defect that is not a band, in place: `spot` (a bright disc of radius 1.5-3 px, contrast^2) or `ridge`
        (a stretch of 8-16 rows of one meshing ridge missing: divided by contrast^2). Returns its bounding box."""
        g = self.rng
        rows, cols = image.shape
        r, c = self.rc
        strength = contrast ** 2
        if self.config.defect == "spot":
            radius = g.uniform(1.5, 3.0)
            centre = (g.uniform(3, rows - 3), g.uniform(3, cols - 3))
            mask = (r - centre[0]) ** 2 + (c - centre[1]) ** 2 <= radius ** 2
            image[mask] *= strength
        elif self.config.defect == "ridge":
            length = int(g.integers(8, 17))
            top = int(g.integers(0, rows - length + 1))
            ridge_id = np.floor(np.where(self.ridges > 0.5, c - self.ridge_slope * r, np.nan) / self.period)
            candidates = np.unique(ridge_id[top:top + length][~np.isnan(ridge_id[top:top + length])])
            chosen = g.choice(candidates)
            mask = (ridge_id == chosen) & (r >= top) & (r < top + length)
            image[mask] /= strength
        else:
            raise ValueError(f"unknown synthetic defect {self.config.defect!r}; known: band, spot, ridge")
        found_rows, found_cols = np.nonzero(mask)
        return {"row": int(found_rows.min()), "width": int(np.ptp(found_rows) + 1), "col_start": int(found_cols.min()),
                "col_end": int(found_cols.max() + 1), "contrast": strength}


def generate_domain(domain: str, config: SynthConfig) -> dict:
    """Arrays and metadata of one domain, normalised by its train maximum."""
    gen = DomainGenerator(domain, config)
    train_conditions = ["cold" if gen.rng.random() < 0.5 else "warm" for _ in range(config.n_train)]
    train = [gen.draw(c, False)[0] for c in train_conditions]
    half = config.n_test // 2
    test_conditions = ["cold"] * half + ["warm"] * (config.n_test - half)
    good = [gen.draw(c, False)[0] for c in test_conditions]
    faults = [gen.draw(c, True) for c in test_conditions]
    scale = float(np.max(train))
    return {
        "train": [m / scale for m in train], "train_conditions": train_conditions,
        "good": [m / scale for m in good], "fault": [m / scale for m, _ in faults],
        "test_conditions": test_conditions, "bands": [b for _, b in faults], "scale": scale,
    }


TRUTH_FIELDS = ["path", "condition", "defect", "row", "width", "col_start", "col_end", "pieces", "contrast", "extent",
                "profile", "mode"]


def fault_truth_rows(data: dict, config: SynthConfig) -> list[dict]:
    """One ground-truth row per test fault map: its core rows (`row`..`row + width - 1`), column span and pieces."""
    out = []
    for index, (fault, condition) in enumerate(zip(data["bands"], data["test_conditions"])):
        row = {"path": f"test/fault/{index:06d}.tiff", "condition": condition, "defect": config.defect,
               "pieces": f"{fault['col_start']}-{fault['col_end']}", "extent": "", "profile": "", "mode": ""}
        out.append({**row, **fault})
    return out


def check_domains(domains: str, specs: dict = DEFAULT_DOMAINS) -> None:
    unknown = [domain for domain in domains if domain not in specs]
    if unknown or not domains:
        raise ValueError(f"--domains {domains!r}: unknown synthetic domain(s) {''.join(unknown)!r}; known: "
                         f"{''.join(specs)}")


def write_dataset(out: str | Path, config: SynthConfig, progress=None) -> Path:
    """Write `OUT/domain_X/{train/good,test/good,test/fault}/NNNNNN.tiff` plus two CSVs per domain:
    `train_conditions.csv` (the hidden truth, `path,condition`) and `fault_truth.csv` (where each fault is)."""
    out = Path(out)
    check_domains(config.domains, config.specs)  # before anything is written: no half-written set
    for domain in config.domains:
        data = generate_domain(domain, config)
        root = out / f"domain_{domain}"
        for subset, maps in (("train/good", data["train"]), ("test/good", data["good"]), ("test/fault", data["fault"])):
            folder = root / subset
            folder.mkdir(parents=True, exist_ok=True)
            for index, array in enumerate(maps):
                tifffile.imwrite(folder / f"{index:06d}.tiff", array.astype(np.float32))
        with open(root / "train_conditions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "condition"])
            for index, condition in enumerate(data["train_conditions"]):
                writer.writerow([f"train/good/{index:06d}.tiff", condition])
        with open(root / "fault_truth.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=TRUTH_FIELDS)
            writer.writeheader()
            writer.writerows(fault_truth_rows(data, config))
        if progress:
            progress(domain)
    return out
