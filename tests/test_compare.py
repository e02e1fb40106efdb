"""`hdmap compare`: two fit-eval runs on the same holdout maps, paired tests; runs on other maps refused."""
import json

import pytest

from hdmap.cli.main import main
from hdmap.data.synth import SynthConfig, write_dataset
from hdmap.evaluation.compare import RunsDifferError, compare_runs
from hdmap.evaluation.scores_file import read_scores

from conftest import Payload, TINY_BACKBONE_SETS

TINY = TINY_BACKBONE_SETS + ["image_size=112", "model.shots=4"]


def _fit_eval(root, out, cache, *sets, domain="C"):
    args = ["fit-eval", "--data-root", str(root), "--domain", domain, "--out", str(out), "--cache-dir", str(cache)]
    for setting in TINY + list(sets):
        args += ["--set", setting]
    assert main(args) == 0
    return out


def test_compare_two_runs_on_the_same_maps_and_refuse_other_maps(synth_root, tmp_path, capsys, tmp_path_factory):
    cache = tmp_path / "cache"
    a = _fit_eval(synth_root, tmp_path / "a", cache, "model.band_weight=2.0")
    b = _fit_eval(synth_root, tmp_path / "b", cache, "model.band_weight=0.0")
    scores = read_scores(a / "scores.csv")
    metrics = json.loads((a / "metrics.json").read_text())
    assert (scores["split"] == "holdout").sum() == metrics["holdout"]["n"]
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp.json")]) == 0
    printed = capsys.readouterr().out
    assert "AUROC: A" in printed and "McNemar" in printed
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert result["auroc"]["difference"] == pytest.approx(metrics["holdout"]["auroc"] -
                                                          json.loads((b / "metrics.json").read_text())["holdout"]["auroc"])
    assert result["accuracy"]["a"] == pytest.approx(metrics["holdout"]["accuracy"])
    forward, backward = compare_runs(a, b), compare_runs(b, a)  # swapping the runs flips every difference
    assert backward["auroc"]["difference"] == pytest.approx(-forward["auroc"]["difference"])
    assert backward["accuracy"]["p_value"] == pytest.approx(forward["accuracy"]["p_value"])
    assert backward["auroc"]["interval"][0] == pytest.approx(-forward["auroc"]["interval"][1], abs=0.02)

    other = tmp_path_factory.mktemp("other")
    write_dataset(other, SynthConfig(n_train=40, n_test=40, seed=9, domains="C"))
    c = _fit_eval(other, tmp_path / "c", cache)
    with pytest.raises(RunsDifferError):
        compare_runs(a, c)
    assert main(["compare", str(a), str(c)]) == 2
    assert "differ" in capsys.readouterr().err

    edited = (b / "scores.csv").read_text().splitlines()  # a hand-edited scores.csv: named, not compared
    edited[1] = ",".join(edited[1].split(",")[:-1] + ["99.0"])
    (b / "scores.csv").write_text("\n".join(edited) + "\n")
    assert main(["compare", str(a), str(b)]) == 2
    assert "scores.csv: changed since the run wrote it" in capsys.readouterr().err



def test_a_crafted_checkpoint_is_refused_without_running_its_payload(tmp_path, capsys):
    import torch

    marker = tmp_path / "payload_ran"
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"state_dict": {}, "hdmap": {"payload": Payload(marker)}}, folder / "model.ckpt")
    assert main(["eval", str(folder / "model.ckpt"), "--out", str(tmp_path / "out")]) == 2
    assert not marker.exists()
    assert "refused" in capsys.readouterr().err
    (folder / "model.ckpt").write_bytes(b"\x13random bytes, not a checkpoint")
    assert main(["eval", str(folder / "model.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "model.ckpt" in err and "not a checkpoint" in err
