import csv

import numpy as np
import pytest

from hdmap.data.map_files import discover_domain, read_map
from hdmap.data.synth import SynthConfig, generate_domain


def test_counts_shapes_dtype(synth_root):
    items = discover_domain(synth_root, "A")
    assert len(items["train"]) == 40
    assert sum(i.label == 1 for i in items["test"]) == 40
    array = read_map(items["test"][0].path)
    assert array.shape == (31, 95) and array.dtype == np.float32


def test_train_normalised_and_warm_brighter():
    data = generate_domain("C", SynthConfig(n_train=200, n_test=200, seed=1))
    train = np.stack(data["train"])
    assert train.max() == np.float32(1.0) and 0.1 < train.mean() < 0.35
    cold = np.array(data["test_conditions"]) == "cold"
    good = np.stack(data["good"])
    ratio = good[~cold].mean() / good[cold].mean()
    assert 1.3 < ratio < 1.5
    conditions = np.array(data["train_conditions"])
    assert 0.3 < (conditions == "warm").mean() < 0.7


def test_warm_is_not_only_a_gain():
    data = generate_domain("C", SynthConfig(n_train=10, n_test=200, seed=1, noise_scale=0.0))
    cold = np.array(data["test_conditions"]) == "cold"
    good = np.stack(data["good"])
    mean_cold, mean_warm = good[cold].mean(0), good[~cold].mean(0)
    scaled = mean_cold * (mean_warm.mean() / mean_cold.mean())
    assert np.abs(mean_warm - scaled).mean() / mean_warm.mean() > 0.03


def test_faults_are_horizontal_bands_only_in_fault_maps():
    config = SynthConfig(n_train=10, n_test=100, seed=2, noise_scale=0.0)
    a = generate_domain("A", config)
    assert np.array_equal(np.stack(a["fault"]), np.stack(generate_domain("A", config)["fault"]))  # seeded
    for band in a["bands"]:
        assert band["width"] in (1, 2) and band["col_end"] - band["col_start"] >= int(0.3 * 95)
    contrast = {c: band["contrast"] for band, c in zip(a["bands"], a["test_conditions"])}
    assert contrast["warm"] > contrast["cold"] > 1.0
    cold = np.array(a["test_conditions"]) == "cold"
    good, fault = np.stack(a["good"]), np.stack(a["fault"])
    typical_rows = good[cold].mean(axis=(0, 2))  # mean row profile of cold good maps

    def brightest_row_excess(maps):
        return (maps.mean(axis=2) / typical_rows).max(axis=1)

    assert brightest_row_excess(good[cold]).max() < 1.2  # no band in any good map
    excess = brightest_row_excess(fault[cold])
    assert excess.min() > 1.2
    rows = np.argmax(fault[cold].mean(axis=2) / typical_rows, axis=1)
    bands = [b for b, c in zip(a["bands"], cold) if c]
    assert all(b["row"] <= r < b["row"] + b["width"] for r, b in zip(rows, bands))


def test_fault_band_rows_are_brighter(synth_root):
    rows = list(csv.DictReader(open(synth_root / "domain_A" / "fault_bands.csv")))
    ratios = []
    for row in rows:
        array = read_map(synth_root / "domain_A" / row["path"])
        r, w, s, e = (int(row[k]) for k in ("row", "width", "col_start", "col_end"))
        band = array[r:r + w, s:e].mean()
        other = np.delete(array[:, s:e], range(r, r + w), axis=0).mean()
        ratios.append(band / other)
    assert np.median(ratios) > 1.3


def test_test_may_exceed_one(synth_root):
    items = discover_domain(synth_root, "A")
    assert max(read_map(i.path).max() for i in items["test"]) > 1.0


@pytest.mark.parametrize("defect", ["spot", "ridge"])
def test_defects_that_are_not_bands_change_only_their_box_by_their_contrast(defect):
    from hdmap.data.synth import DomainGenerator, SynthConfig

    faulty, twin = (DomainGenerator("C", SynthConfig(defect=defect)) for _ in range(2))
    for _ in range(5):  # the twin draws the same map without its defect (the defect's draws come last)
        image, box = faulty.draw("cold", True)
        normal, _ = twin.draw("cold", False)
        twin.rng.bit_generator.state = faulty.rng.bit_generator.state  # resynchronise after the defect's draws
        changed = np.argwhere(image != normal)
        assert len(changed) > 0
        rows, cols = changed[:, 0], changed[:, 1]
        assert rows.min() >= box["row"] and rows.max() < box["row"] + box["width"]
        assert cols.min() >= box["col_start"] and cols.max() < box["col_end"]
        ratio = image[image != normal] / normal[image != normal]
        expected = box["contrast"] if defect == "spot" else 1 / box["contrast"]
        assert np.allclose(ratio[normal[image != normal] > 0.05], expected, rtol=1e-3)
