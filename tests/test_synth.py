import csv

import numpy as np
import pytest

from hdmap.data.map_files import discover_domain, read_map
from hdmap.data.synth import SynthConfig, generate_domain, write_dataset


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
    rows = list(csv.DictReader(open(synth_root / "domain_A" / "fault_truth.csv")))
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


# --- the shapes a gearbox draws (hdmap/data/band_shapes.py) -----------------------------------------------------
from hdmap.data.band_shapes import SOFT_EDGE, BandShape, draw_band  # noqa: E402


def drawn(shape: BandShape, seed: int, level: float = 2.0, contrast: float = 1.5):
    image = np.full((31, 95), level)
    truth = draw_band(image, contrast, shape, np.random.default_rng(seed))
    return image, truth


def spans(truth: dict) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in piece.split("-")) for piece in truth["pieces"].split(";")]


def test_bands_take_every_width_asked_and_soft_edges_part_of_the_contrast():
    widths = set()
    for seed in range(60):
        image, truth = drawn(BandShape((1, 3), "soft"), seed)
        widths.add(truth["width"])
        row, width, (start, end) = truth["row"], truth["width"], spans(truth)[0]
        assert np.allclose(image[row:row + width, start:end], 3.0)  # 2 x 1.5
        edges = [r for r in (row - 1, row + width) if 0 <= r < 31]
        assert np.allclose(image[edges, start:end], 2.0 * (1 + SOFT_EDGE * 0.5))
        others = np.delete(image, list(range(row, row + width)) + edges, axis=0)
        assert np.all(others == 2.0)
    assert widths == {1, 2, 3}


@pytest.mark.parametrize("extent,counts", [("broken", range(2, 5)), ("pulses", range(3, 7))])
def test_broken_bands_and_pulse_trains_cover_only_their_pieces(extent, counts):
    for seed in range(30):
        image, truth = drawn(BandShape(extent=extent), seed)
        pieces = spans(truth)
        assert len(pieces) in counts and truth["extent"] == extent
        covered = np.zeros(95, bool)
        for start, end in pieces:
            covered[start:end] = True
        assert np.allclose(image[truth["row"], covered], 3.0) and np.all(image[truth["row"], ~covered] == 2.0)
        assert covered.sum() < 95 and truth["col_start"] == min(s for s, _ in pieces)
        if extent == "pulses":  # evenly spaced along the row
            gaps = np.diff(sorted(s for s, _ in pieces))
            assert gaps.max() - gaps.min() <= 1


def test_additive_bands_add_a_share_of_the_maps_mean_level():
    image, truth = drawn(BandShape(mode="additive"), seed=3, level=2.0, contrast=1.25)
    start, end = spans(truth)[0]
    assert np.allclose(image[truth["row"], start:end], 2.0 + 0.25 * 2.0) and truth["mode"] == "additive"


def test_the_default_band_shape_draws_todays_bands_bit_for_bit():
    """The draws of `BandShape()` are those of the generator before the shapes existed (widths 1-2, rows 1..,
    full row or one partial run) -- recomputed here from the same seed by the same rules."""
    rng, again = np.random.default_rng(7), np.random.default_rng(7)
    image = np.ones((31, 95))
    truth = draw_band(image, 1.3, BandShape(), rng)
    width = int(again.integers(1, 3))
    row = int(again.integers(1, 31 - width))
    if again.random() < 0.5:
        start, end = 0, 95
    else:
        length = int(again.integers(int(0.3 * 95), int(0.8 * 95)))
        start = int(again.integers(0, 95 - length))
        end = start + length
    assert (truth["row"], truth["width"], truth["col_start"], truth["col_end"]) == (row, width, start, end)


def test_row_gain_drifts_smoothly_from_map_to_map():
    still = generate_domain("C", SynthConfig(n_train=60, n_test=2, seed=4, noise_scale=0.0))
    drifting = generate_domain("C", SynthConfig(n_train=60, n_test=2, seed=4, noise_scale=0.0, row_drift=0.1))
    ratio = np.stack(drifting["train"]).mean(axis=2) / np.stack(still["train"]).mean(axis=2)  # (maps, rows)
    ratio /= ratio.mean(axis=1, keepdims=True)
    assert 0.05 < ratio.std(axis=1).mean() < 0.15  # each map its own gain profile, sd ~0.1
    assert np.abs(np.diff(ratio, axis=1)).mean() < 0.5 * ratio.std(axis=1).mean()  # smooth over the rows
    assert np.corrcoef(ratio[0], ratio[1])[0, 1] < 0.9  # not the same profile on every map


def test_ground_truth_rows_match_the_brightest_line_on_easy_maps(tmp_path):
    from hdmap.models.band import BandSettings, BandModel

    config = SynthConfig(n_train=100, n_test=60, seed=5, domains="C", contrast_scale=3.0, row_drift=0.03,
                         band=BandShape((1, 3), "soft", "mixed", "multiplicative"))
    write_dataset(tmp_path, config)
    truth = list(csv.DictReader(open(tmp_path / "domain_C" / "fault_truth.csv")))
    assert len(truth) == 60 and {row["extent"] for row in truth} == {"contiguous", "broken", "pulses"}
    train = np.stack([read_map(p) for p in sorted((tmp_path / "domain_C" / "train" / "good").glob("*.tiff"))])
    faults = np.stack([read_map(tmp_path / "domain_C" / row["path"]) for row in truth])
    rows = BandModel(BandSettings()).fit(train).line_z(faults)["rows"].argmax(dim=1).numpy()
    hits = [int(row["row"]) - 1 <= found <= int(row["row"]) + int(row["width"]) for row, found in zip(truth, rows)]
    assert np.mean(hits) >= 0.95


def test_hdmap_synth_draws_the_asked_shapes_and_names_a_bad_width(tmp_path, capsys):
    from hdmap.cli.main import main

    assert main(["synth", str(tmp_path / "set"), "--domains", "C", "--n-train", "8", "--n-test", "8",
                 "--band-widths", "1-3", "--band-extent", "pulses", "--band-mode", "additive",
                 "--row-drift", "0.1"]) == 0
    truth = list(csv.DictReader(open(tmp_path / "set" / "domain_C" / "fault_truth.csv")))
    assert len(truth) == 8 and {row["extent"] for row in truth} == {"pulses"} and truth[0]["mode"] == "additive"
    with pytest.raises(SystemExit) as stopped:
        main(["synth", str(tmp_path / "other"), "--band-widths", "wide"])
    assert stopped.value.code == 2 and "--band-widths expects LOW-HIGH rows" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "third"), "--band-widths", "3-1"]) == 2
    assert "band widths must be 1 <= low <= high <= 5" in capsys.readouterr().err


def test_hdmap_synth_refuses_a_folder_holding_a_set_and_replaces_it_with_overwrite(tmp_path, capsys):
    from hdmap.cli.main import main

    out = tmp_path / "set"
    assert main(["synth", str(out), "--domains", "C", "--n-train", "30", "--n-test", "10"]) == 0
    assert main(["synth", str(out), "--domains", "C", "--n-train", "10", "--n-test", "10"]) == 2
    assert "domain_C already holds a data set" in capsys.readouterr().err
    assert len(list((out / "domain_C" / "train" / "good").iterdir())) == 30  # untouched
    assert main(["synth", str(out), "--domains", "C", "--n-train", "10", "--n-test", "10", "--overwrite"]) == 0
    assert len(list((out / "domain_C" / "train" / "good").iterdir())) == 10  # no stale maps mixed in


@pytest.mark.parametrize("args, said", [(["--n-test", "-4"], "expects an integer >= 2, got '-4'"),
                                        (["--n-train", "0"], "expects an integer >= 1, got '0'")])
def test_hdmap_synth_refuses_counts_that_draw_nothing(args, said, tmp_path, capsys):
    from hdmap.cli.main import main

    with pytest.raises(SystemExit) as stopped:
        main(["synth", str(tmp_path / "set"), *args])
    assert stopped.value.code == 2 and said in capsys.readouterr().err


def test_hdmap_synth_refuses_an_unknown_domain_before_writing_any(tmp_path, capsys):
    from hdmap.cli.main import main

    assert main(["synth", str(tmp_path / "set"), "--domains", "CE", "--n-train", "4", "--n-test", "4"]) == 2
    assert "unknown synthetic domain(s) 'E'" in capsys.readouterr().err and not (tmp_path / "set").exists()
