"""`hdmap predict`: a fitted run of every kind applied to maps; its scores are the run's own, its threshold the run's
tune threshold, its rows where the bands are, and a bad map is named (exit 2) or skipped with --skip-bad."""
import csv
import json
import shutil

import numpy as np
import pytest
import tifffile

from conftest import TINY_BACKBONE_SETS
from hdmap.cli.main import main
from hdmap.kinds.feclip.model import TINY_CLIP

TINY_PATCHCORE = TINY_BACKBONE_SETS + ["image_size=56", "model.coreset_ratio=0.5", "model.bank_size=null"]
KINDS = {
    "hdmap_patchcore": ["--model", "hdmap_patchcore", *TINY_PATCHCORE],
    "patchcore": ["--model", "patchcore", *TINY_PATCHCORE],
    "band": ["--model", "band"],
    "band_only": ["--model", "hdmap_patchcore", *TINY_PATCHCORE, "model.fusion=band_only"],
    "feclip": ["--model", "feclip", "image_size=32", "feclip=" + json.dumps({**TINY_CLIP, "mix": 0.3}),
               "train.epochs=1", "fewshot.shots=4"],
}


def fit_eval_args(kind: str) -> list[str]:
    """fit-eval's arguments for a kind: `--model X` then each setting as `--set`."""
    model, name, *sets = KINDS[kind]
    return [model, name] + [arg for setting in sets for arg in ("--set", setting)]


def read_predictions(folder):
    with open(folder / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def fitted(synth_root, tmp_path_factory):
    """One fit-eval run per kind on the tiny domain C."""
    runs = {}
    for kind in KINDS:
        out = tmp_path_factory.mktemp("runs") / kind
        assert main(["fit-eval", "--data-root", str(synth_root), "--out", str(out), *fit_eval_args(kind)]) == 0
        runs[kind] = out
    return runs


@pytest.mark.parametrize("kind", list(KINDS))
def test_predict_scores_a_runs_test_maps_as_its_scores_csv(kind, fitted, synth_root, tmp_path):
    run = fitted[kind]
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(synth_root / "domain_C" / "test"), "--out", str(out), "--no-images"]) == 0
    rows = {row["path"].split("domain_C/")[1]: row for row in read_predictions(out)}
    with open(run / "scores.csv", newline="") as handle:
        expected = {row["file"]: float(row["score"]) for row in csv.DictReader(handle)}
    threshold = json.loads((run / "metrics.json").read_text())["tune"]["threshold"]
    assert set(rows) == set(expected)
    scores = np.array([float(rows[name]["score"]) for name in expected])
    assert scores.tolist() == list(expected.values())
    assert all(float(row["threshold"]) == threshold for row in rows.values())
    assert all(int(row["anomalous"]) == (float(row["score"]) >= threshold) for row in rows.values())
    assert "Predictions" in (out / "summary.md").read_text() and (out / "scores.png").is_file()


def test_rows_of_flagged_faults_are_the_true_band_rows(fitted, synth_root, tmp_path):
    """The band kind names the row of a synthetic band (within one row) for nearly every flagged fault; the same
    number is in metrics.json (fit-eval) with its interval."""
    location = json.loads((fitted["band"] / "metrics.json").read_text())["location"]
    assert location["n"] > 0 and location["row_hit_rate"] >= 0.9 and len(location["interval"]) == 2
    out = tmp_path / "pred"
    assert main(["predict", str(fitted["band"]), str(synth_root / "domain_C" / "test" / "fault"), "--out", str(out),
                 "--images", "3"]) == 0
    with open(synth_root / "domain_C" / "fault_truth.csv", newline="") as handle:
        truth = {row["path"]: (int(row["row"]), int(row["row"]) + int(row["width"]) - 1)
                 for row in csv.DictReader(handle)}
    flagged = [row for row in read_predictions(out) if row["anomalous"] == "1"]
    hits = [truth[row["path"].split("domain_C/")[1]][0] - 1 <= int(row["row"])
            <= truth[row["path"].split("domain_C/")[1]][1] + 1 for row in flagged]
    assert flagged and np.mean(hits) >= 0.9
    assert len(list((out / "flagged").glob("*.png"))) == min(3, len(flagged))


def _maps_folder(synth_root, tmp_path, count=4):
    folder = tmp_path / "new"
    folder.mkdir()
    for path in sorted((synth_root / "domain_C" / "test" / "good").glob("*.tiff"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def test_a_map_of_another_size_is_named_and_skipped_only_when_asked(fitted, synth_root, tmp_path, capsys):
    folder = _maps_folder(synth_root, tmp_path)
    tifffile.imwrite(folder / "odd.tiff", np.ones((20, 95), dtype=np.float32))
    nan = np.ones((31, 95), dtype=np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(folder / "nan.tiff", nan)
    tifffile.imwrite(folder / "counts.tiff", np.ones((31, 95), dtype=np.uint16))
    out = tmp_path / "pred"
    assert main(["predict", str(fitted["band"]), str(folder), "--out", str(out)]) == 2
    assert "counts.tiff" in capsys.readouterr().err and not out.exists()  # the first bad map; nothing written
    assert main(["predict", str(fitted["band"]), str(folder), "--out", str(out), "--skip-bad"]) == 0
    assert len(read_predictions(out)) == 4
    summary = (out / "summary.md").read_text()
    assert "odd.tiff: map size 20x95 differs" in summary and "nan.tiff" in summary and "NaN/inf" in summary
    assert "counts.tiff: stored as uint16, the run's maps as floats" in summary


def test_no_maps_and_no_run_are_named(fitted, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(fitted["band"]), str(empty), "--out", str(tmp_path / "p")]) == 2
    assert "no maps" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing"), str(empty), "--out", str(tmp_path / "p")]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_train_maps_are_marked_and_a_list_file_is_read(fitted, synth_root, tmp_path):
    train = sorted((synth_root / "domain_C" / "train" / "good").glob("*.tiff"))[:2]
    test = sorted((synth_root / "domain_C" / "test" / "good").glob("*.tiff"))[:1]
    listing = tmp_path / "maps.txt"
    listing.write_text("\n".join(str(p) for p in train + test) + "\n")
    out = tmp_path / "pred"
    assert main(["predict", str(fitted["hdmap_patchcore"]), str(listing), "--out", str(out), "--no-images"]) == 0
    notes = [row["note"] for row in read_predictions(out)]
    assert [bool(note) for note in notes] == [True, True, False] and "train map of the run" in notes[0]
    assert main(["predict", str(fitted["hdmap_patchcore"]), str(listing), "--out", str(out)]) == 2  # held: refused
