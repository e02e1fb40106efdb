import json

import pytest

from hdmap.cli.main import main
from hdmap.kinds.feclip.model import TINY_CLIP
from hdmap.config import ConfigError, merge, parse_set
from hdmap.kinds.registry import default_config, validate


def test_synth_cli(tmp_path):
    assert main(["synth", str(tmp_path / "d"), "--n-train", "6", "--n-test", "4", "--domains", "B"]) == 0
    assert len(list((tmp_path / "d" / "domain_B" / "test" / "fault").glob("*.tiff"))) == 4


def test_fit_eval_writes_valid_metrics(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HDMAP_CACHE", str(tmp_path / "cache"))
    sets = ["backbone.name=dinov2_vits14", "backbone.weights=none", "backbone.taps=[0,1]",
            "backbone.model_kwargs={depth: 2, embed_dim: 24, num_heads: 2}", "image_size=112",
            "model.shots=4", "model.bank_mode=gated", "model.gate.kind=discover"]
    args = ["fit-eval", "--data-root", str(synth_root), "--domain", "A", "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"model", "domain", "config", "gate", "tune", "holdout", "timing_s"} <= set(metrics)
    assert set(metrics["holdout"]) >= {"auroc", "ap", "f1", "accuracy", "accuracy_oracle", "n", "by_condition"}
    assert metrics["gate"]["kind"] == "discover" and metrics["gate"]["accuracy"] is not None
    from hdmap.evaluation.metrics import accuracy_at, auroc
    from hdmap.evaluation.scores_file import read_scores

    scores = read_scores(tmp_path / "run" / "scores.csv")  # the per-map record: the numbers recomputed from it
    threshold = metrics["tune"]["threshold"]
    for block in ("tune", "holdout"):
        part = scores["split"] == block
        assert metrics[block]["n"] == part.sum()
        assert metrics[block]["accuracy"] == pytest.approx(accuracy_at(scores["score"][part], scores["label"][part],
                                                                       threshold))
    hold = scores["split"] == "holdout"
    assert metrics["holdout"]["auroc"] == pytest.approx(auroc(scores["score"][hold], scores["label"][hold]))
    for name in ("report.md", "scores.png", "anomaly_maps.png", "model.ckpt", "split.json"):
        assert (tmp_path / "run" / name).exists()


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="'imagesize'"):
        merge(default_config(), {"imagesize": 3})
    with pytest.raises(ConfigError, match="model.gate.colour"):
        validate(merge(default_config(), parse_set(["model.gate.colour=blue"])))
    with pytest.raises(ConfigError, match="bank_mode"):
        validate(merge(default_config(), parse_set(["model.bank_mode=triple"])))


def test_fit_eval_feclip_band_training_writes_metrics(synth_root, tmp_path):
    tiny = json.dumps(TINY_CLIP["clip_kwargs"])
    args = ["fit-eval", "--data-root", str(synth_root), "--domain", "A", "--model", "feclip",
            "--out", str(tmp_path / "fe"), "--set", "feclip.clip_weights=none", "--set", f"feclip.clip_kwargs={tiny}",
            "--set", "feclip.taps=[1,2]", "--set", "image_size=32", "--set", "train.epochs=1",
            "--set", "train.batch_size=8"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "fe" / "metrics.json").read_text())
    assert metrics["model"] == "feclip" and 0 <= metrics["holdout"]["auroc"] <= 1
    assert (tmp_path / "fe" / "model.ckpt").exists() and (tmp_path / "fe" / "anomaly_maps.png").exists()
    assert main(["eval", str(tmp_path / "fe"), "--out", str(tmp_path / "fe_eval")]) == 0  # FE-CLIP runs reload
    again = json.loads((tmp_path / "fe_eval" / "metrics.json").read_text())
    assert again["holdout"] == metrics["holdout"] and again["tune"]["threshold"] == metrics["tune"]["threshold"]
    with pytest.raises(ConfigError, match="train.checkpoint"):
        main(["--debug"] + args + ["--set", "train.source=checkpoint"])


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    code = main(["fit-eval", "--data-root", str(tmp_path / "missing"), "--backbone", "tf_efficientnet_lite0",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(tmp_path / "missing") in err and "Traceback" not in err
    assert main(["fit-eval", "--set", "model.bank_mode=triple", "--out", str(tmp_path / "run")]) == 2
    assert "bank_mode" in capsys.readouterr().err


def test_hub_failure_names_the_offline_flag(synth_root, tmp_path, capsys, monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection")

    monkeypatch.setattr(timm, "create_model", offline)
    code = main(["fit-eval", "--data-root", str(synth_root), "--out", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--backbone tf_efficientnet_lite0" in err and "backbone.weights=FILE" in err


def test_backbone_flag_sets_its_presets():
    from hdmap.features.backbones import BackboneSpec
    from hdmap.jobs.fit_eval import resolve_config

    run = resolve_config("ROOT", None, None, [], backbone="tf_efficientnet_lite0")
    assert run.backbone == BackboneSpec(name="tf_efficientnet_lite0", weights="default", taps=(2, 3), model_kwargs={})
    assert run.image_size == 384 and run.resize == "aspect"
    assert resolve_config("ROOT", None, None, []).backbone.name == "dinov2_vits14"  # real data default
    overridden = resolve_config("ROOT", None, None, ["backbone.taps=[1]"], backbone="tf_efficientnet_lite0")
    assert overridden.backbone.taps == (1,)  # --set wins over the preset


def test_one_place_for_defaults():
    from hdmap.features.backbones import BACKBONES, BackboneSpec
    from hdmap.kinds.patchcore.settings import PatchCoreSettings

    config = default_config()
    assert config["model"] == PatchCoreSettings().to_dict()
    assert tuple(config["backbone"]["taps"]) == BackboneSpec().taps == BACKBONES[BackboneSpec().name].taps


def test_fit_eval_feclip_fewshot_variant(synth_root, tmp_path):
    tiny = json.dumps(TINY_CLIP["clip_kwargs"])
    args = ["fit-eval", "--data-root", str(synth_root), "--domain", "A", "--model", "feclip",
            "--out", str(tmp_path / "fs"), "--set", "feclip.clip_weights=none", "--set", f"feclip.clip_kwargs={tiny}",
            "--set", "feclip.taps=[1,2]", "--set", "image_size=32", "--set", "train.source=none",
            "--set", "fewshot.shots=4", "--set", "fewshot.weight=1.0"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "fs" / "metrics.json").read_text())
    assert metrics["gate"]["kind"] == "intensity" and metrics["gate"]["accuracy"] > 0.9
    assert metrics["holdout"]["auroc"] > 0.6  # domain A bands are strong: the patch memory finds them


def test_eval_scores_benchmark_adapters_zero_shot(synth_root, tmp_path, capsys):
    from hdmap.kinds.feclip.module import FEClipModule

    settings = {**default_config(model_name="feclip")["feclip"], **TINY_CLIP}
    FEClipModule(model=settings).trainer_free_save(tmp_path / "adapters.ckpt")  # what feclip_benchmark.py writes
    assert main(["eval", str(tmp_path / "adapters.ckpt"), "--out", str(tmp_path / "zero")]) == 2
    assert "--data-root" in capsys.readouterr().err
    code = main(["eval", str(tmp_path / "adapters.ckpt"), "--data-root", str(synth_root), "--domain", "A",
                 "--out", str(tmp_path / "zero")])
    assert code == 0
    metrics = json.loads((tmp_path / "zero" / "metrics.json").read_text())
    assert metrics["model"] == "feclip" and metrics["config"]["feclip"]["clip_kwargs"] == TINY_CLIP["clip_kwargs"]
    assert (tmp_path / "zero" / "split.json").exists()


def test_every_search_option_is_a_flag_and_is_passed_on():
    """SearchOptions is built from its own fields: a new field is a new flag (or stays at its default, named here)."""
    import argparse
    from dataclasses import fields

    from hdmap.cli.tune import ARGUMENT_OF, add_tune, options_from
    from hdmap.tune.runner import SearchOptions

    parser = argparse.ArgumentParser()
    add_tune(parser.add_subparsers())
    args = parser.parse_args(["tune", "--num-samples", "3", "--set", "model.shots=4", "--model", "gated_patchcore"])
    assert [f.name for f in fields(SearchOptions) if not hasattr(args, ARGUMENT_OF.get(f.name, f.name))] == ["verbose"]
    options = options_from(args)
    assert (options.num_samples, options.sets, options.model) == (3, ["model.shots=4"], "hdmap_patchcore")


@pytest.mark.parametrize("argv, named", [
    (["fit-eval", "--domain", "A", "--domain", "C", "--out", "x"], "--domain given twice"),
    (["fit-eval", "--out", "a", "--out=b"], "--out given twice"),
    (["predict", "run", "maps", "--out", "a", "--device", "cpu", "--device", "cuda"], "--device given twice"),
])
def test_a_one_value_option_given_twice_is_named(argv, named, capsys, tmp_path):
    assert main(argv) == 2
    assert named in capsys.readouterr().err and not (tmp_path / "a").exists()


def test_ctrl_c_during_a_command_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    from hdmap.jobs import fit_eval as job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "fit_and_score", interrupted)
    assert main(["fit-eval", "--model", "band", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C); stopped with nothing half-written" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
