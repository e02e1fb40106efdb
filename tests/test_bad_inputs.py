"""Every bad input, fault and interruption ends in one line naming the culprit (exit 2) or in the right result.

Each case builds a tiny data set, breaks one thing, runs the console command and checks the exit code, that the
message names the file, key or row at fault, and that nothing wrong was used or left behind. The interrupted
search is in tests/test_tune_search.py (exit 130, summary says so, --resume finishes it).
"""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from hdmap.config import ConfigError
from hdmap.cli.main import main
from hdmap.data.synth import SynthConfig, write_dataset

from conftest import Payload, TINY_BACKBONE_SETS

TINY = TINY_BACKBONE_SETS + ["image_size=56", "model.shots=3", "model.coreset_ratio=0.5"]


@pytest.fixture(scope="module")
def base_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_base")
    write_dataset(root, SynthConfig(n_train=16, n_test=12, seed=5, domains="C"))
    return root


@pytest.fixture
def root(base_root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(base_root, copy)
    return copy


def fit_eval(root, out, *extra, sets=()):
    args = ["fit-eval", "--data-root", str(root), "--domain", "C", "--out", str(out)]
    for setting in list(TINY) + list(sets):
        args += ["--set", setting]
    return main(args + list(extra))


def tiff(root, subset="train/good", index=0):
    return Path(root) / "domain_C" / subset / f"{index:06d}.tiff"


MAP_CASES = {  # a broken map file -> the words the one-line error must hold (besides the file's name)
    "nan": (lambda p: tifffile.imwrite(p, np.full((31, 95), np.nan, np.float32)), "NaN"),
    "3-D": (lambda p: tifffile.imwrite(p, np.zeros((2, 31, 95), np.float32)), "2-D"),
    "empty": (lambda p: tifffile.imwrite(p, np.zeros((0, 95), np.float32)), "empty"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:40]), "cannot be read"),
    "odd size": (lambda p: tifffile.imwrite(p, np.zeros((30, 95), np.float32)), "shape"),
    "int16 among floats": (lambda p: tifffile.imwrite(p, (tifffile.imread(p) * 1000).astype(np.int16)),
                           "integer map (int16) among float maps"),
    "complex": (lambda p: tifffile.imwrite(p, (tifffile.imread(p) + 1j).astype(np.complex64)), "complex values"),
    "multi-page": (lambda p: _two_pages(p), "holds 2 pages"),
}


def _two_pages(path):
    page = tifffile.imread(path)
    with tifffile.TiffWriter(path) as tif:
        tif.write(page)
        tif.write(page)


@pytest.mark.parametrize("case", sorted(MAP_CASES))
def test_a_bad_map_is_named_and_nothing_is_written(case, root, tmp_path, capsys):
    damage, words = MAP_CASES[case]
    path = tiff(root, "test/good", 3)
    damage(path)
    capsys.readouterr()
    assert fit_eval(root, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and words in err
    assert not (tmp_path / "run").exists()  # a failed fit-eval leaves nothing behind (no split.json)


def test_an_all_integer_data_set_is_read_with_a_note(root, tmp_path, capsys):
    for path in (Path(root) / "domain_C").rglob("*.tiff"):
        tifffile.imwrite(path, (tifffile.imread(path) * 1000).astype(np.int32))
    assert fit_eval(root, tmp_path / "run") == 0
    assert "integer type" in capsys.readouterr().err
    assert any("integer type" in note for note in json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"])


def test_a_file_that_is_not_a_map_is_named_unless_ignored(root, tmp_path, capsys):
    stray = Path(root) / "domain_C" / "train" / "good" / "preview.png"
    stray.write_bytes(b"\x89PNG")
    assert fit_eval(root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert str(stray) in err and "--ignore-other-files" in err
    assert fit_eval(root, tmp_path / "run", "--ignore-other-files") == 0
    assert "skipped 1 entries" in capsys.readouterr().err


@pytest.mark.parametrize("missing, words", [("domain_C", "domain folder not found"),
                                            ("domain_C/test/fault", "HDMAP folder not found")])
def test_a_missing_folder_is_named(missing, words, root, tmp_path, capsys):
    shutil.rmtree(Path(root) / missing)
    assert fit_eval(root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert words in err and missing.split("/")[-1] in err


@pytest.mark.parametrize("setting, words", [
    ("imagesize=3", "unknown config key 'imagesize'"),  # quotes kept intact
    ("model.gate.colour=blue", "unknown config key 'model.gate.colour'"),
    ("model.shots=abc", "config key 'model.shots' expects int | None, got 'abc'"),
    ("model.bank_mode=triple", "bank_mode"),
    ("backbone.name=not_a_model", "not_a_model"),
])
def test_a_bad_setting_is_named_with_its_message_intact(setting, words, root, tmp_path, capsys):
    assert fit_eval(root, tmp_path / "run", sets=[setting]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_a_used_out_is_refused_unless_overwrite(root, tmp_path, capsys):
    out = tmp_path / "run"
    assert fit_eval(root, out) == 0
    first = (out / "metrics.json").read_text()
    assert fit_eval(root, out, sets=["model.band_weight=0"]) == 2
    assert str(out) in capsys.readouterr().err and (out / "metrics.json").read_text() == first
    assert fit_eval(root, out, "--overwrite", sets=["model.band_weight=0"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["model"]["band_weight"] == 0


def _csv(path, rows):
    path.write_text("path,condition\n" + "".join(f"{p},{c}\n" for p, c in rows))
    return path


def _test_tails(root):
    return [f"domain_C/{sub}/{p.name}" for sub in ("test/good", "test/fault")
            for p in sorted((Path(root) / "domain_C" / sub).glob("*.tiff"))]


def test_condition_csv_paths_are_relative_to_the_data_root_and_every_row_must_match(root, tmp_path, capsys):
    tails = _test_tails(root)
    flipped = [(t, "warm" if int(Path(t).stem) < 6 else "cold") for t in tails]  # every condition flipped
    (tmp_path / "elsewhere").mkdir()  # the CSV lives away from the data: its paths still start at the data root
    csv = _csv(tmp_path / "elsewhere" / "c.csv", flipped)
    assert fit_eval(root, tmp_path / "a", "--condition-csv", str(csv)) == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["test_conditions_from"] == {"condition CSV": len(tails)}
    cold = metrics["holdout"]["by_condition"]["cold"]["n"]
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert cold == sum(1 for i in split["holdout"] if int(Path(split["paths"][i]).stem) >= 6)  # the CSV's, not the rule's
    bad = _csv(tmp_path / "bad.csv", flipped + [("domain_C/test/good/000999.tiff", "cold")])
    assert fit_eval(root, tmp_path / "b", "--condition-csv", str(bad)) == 2
    err = capsys.readouterr().err
    assert "bad.csv:" in err and "000999.tiff" in err and "matches no map file" in err


def test_a_condition_csv_must_cover_every_test_map_unless_partial(root, tmp_path, capsys):
    tails = _test_tails(root)
    part = _csv(tmp_path / "part.csv", [(t, "cold") for t in tails[:5]])
    assert fit_eval(root, tmp_path / "a", "--condition-csv", str(part)) == 2
    assert "covers 5 of" in capsys.readouterr().err
    assert fit_eval(root, tmp_path / "a", "--condition-csv", str(part), "--condition-csv-partial") == 0
    counts = json.loads((tmp_path / "a" / "metrics.json").read_text())["test_conditions_from"]
    assert counts == {"condition CSV": 5, "file-index rule": len(tails) - 5}
    assert "condition CSV 5" in (tmp_path / "a" / "report.md").read_text()


def test_a_condition_csv_with_only_its_header_is_named_not_ignored(root, tmp_path, capsys):
    header = _csv(tmp_path / "header.csv", [])
    assert fit_eval(root, tmp_path / "a", "--condition-csv", str(header)) == 2
    assert "header.csv: the condition CSV has its header but no row" in capsys.readouterr().err


@pytest.mark.parametrize("setting", ["model.gate.threshold=.nan", "model.band.gate.threshold=.inf",
                                     "model.fusion_weight=-.inf"])
def test_a_setting_of_nan_or_inf_is_named(setting, root, tmp_path, capsys):
    assert fit_eval(root, tmp_path / "a", "--set", setting) == 2
    assert f"config key '{setting.split('=')[0]}' expects a finite number" in capsys.readouterr().err


def _cache_entries(cache):
    return sorted(p for p in Path(cache).iterdir() if p.is_dir() and (p / "meta.json").exists())


@pytest.mark.parametrize("damage", ["zero half", "truncate"])
def test_a_corrupt_feature_cache_entry_is_recomputed_never_used(damage, root, tmp_path):
    cache = tmp_path / "cache"
    assert fit_eval(root, tmp_path / "clean", "--cache-dir", str(cache)) == 0
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())["holdout"]
    for entry in _cache_entries(cache):
        tap = entry / "tap0.npy"
        data = bytearray(tap.read_bytes())
        if damage == "zero half":
            data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
        else:
            data = data[: len(data) // 2]
        tap.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fit_eval(root, tmp_path / "again", "--cache-dir", str(cache)) == 0
    assert any("feature cache entry" in str(w.message) and "recomputing" in str(w.message) for w in caught)
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["holdout"] == clean


def test_a_corrupt_coreset_store_entry_is_recomputed(tmp_path):
    from hdmap.models.coreset_store import CoresetStore

    features = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    store = CoresetStore(tmp_path / "coresets")
    first = store.coreset(features, 30, 0, None)
    entry = next((tmp_path / "coresets").glob("*.pt"))
    state = torch.load(entry, weights_only=True)
    state["order"] = torch.zeros_like(state["order"])  # a damaged order whose checksum no longer fits
    torch.save(state, entry)
    with pytest.warns(UserWarning, match="coreset store entry .* recomputing"):
        again = CoresetStore(tmp_path / "coresets").coreset(features, 30, 0, None)
    assert torch.equal(first, again)


@pytest.mark.parametrize("content", ["payload", "random bytes", "truncated", "foreign dict"])
def test_a_checkpoint_we_did_not_write_is_refused_and_runs_nothing(content, root, tmp_path, capsys):
    assert fit_eval(root, tmp_path / "run") == 0
    path = tmp_path / "run" / "model.ckpt"
    marker = tmp_path / "payload_ran"
    if content == "payload":
        torch.save({"state_dict": {}, "hdmap": {"x": Payload(marker)}}, path)
    elif content == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif content == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    capsys.readouterr()
    assert main(["eval", str(path), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_checkpoints_and_results_are_written_atomically(tmp_path, monkeypatch):
    """A write that dies midway leaves the previous file whole and no temporary file behind."""
    from hdmap.atomic_files import write_text_atomic

    target = tmp_path / "metrics.json"
    target.write_text("old")

    class Boom(RuntimeError):
        pass

    def broken(self, text):
        Path.write_bytes(self, text[:3].encode())
        raise Boom()

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(Boom):
        write_text_atomic(target, "new contents")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("model, setting, words", [
    ("feclip", "train.epochs=abc", "config key 'train.epochs' expects int, got 'abc'"),  # int
    ("feclip", "fewshot.shots=many", "config key 'fewshot.shots' expects int, got 'many'"),
    ("feclip", "fewshot.shots=-1", "config key 'fewshot.shots' expects [0, inf), got -1"),
    ("feclip", "train.lr=-1", "config key 'train.lr' expects [0, inf), got -1"),
    ("feclip", "feclip.temperature=0", "config key 'feclip.temperature' expects (0, inf), got 0"),  # open range
    ("feclip", "train.checkpoint=/no/such/feclip.ckpt", "config key 'train.checkpoint' expects an existing file"),
    ("hdmap_patchcore", "split.tune_fraction=x", "config key 'split.tune_fraction' expects float, got 'x'"),  # float
    ("hdmap_patchcore", "split.tune_fraction=1", "config key 'split.tune_fraction' expects (0, 1), got 1"),
    ("hdmap_patchcore", "model.coreset_ratio=2", "config key 'model.coreset_ratio' expects (0, 1], got 2"),  # range
    ("hdmap_patchcore", "model.distance=manhattan", "config key 'model.distance' expects one of l2, cosine"),  # choice
    ("hdmap_patchcore", "model.context_ks=[0,-2]", "config key 'model.context_ks' expects items >= 0"),  # list
    ("hdmap_patchcore", "model.band.runs=[half]", "config key 'model.band.runs' expects tuple[float, ...]"),
    ("hdmap_patchcore", "image_size=0", "config key 'image_size' expects [14, inf), got 0"),
    ("hdmap_patchcore", "resize=stretch", "config key 'resize' expects one of nearest, bilinear, aspect"),
    ("band", "band.top_k=0", "config key 'band.top_k' expects [1, inf), got 0"),
])
def test_every_kind_of_setting_is_checked_at_the_edge_by_its_field(model, setting, words, root, tmp_path, capsys):
    """Type, range, choice, list and path, for every kind: exit 2 and one line naming the key, the value and what
    it expects, before any map is read."""
    args = ["fit-eval", "--data-root", str(root), "--domain", "C", "--model", model, "--out", str(tmp_path / "run"),
            "--set", setting]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_csv_giving_one_map_two_conditions_is_refused_naming_both_lines(root, tmp_path, capsys):
    tails = _test_tails(root)
    rows = [(t, "cold") for t in tails] + [(tails[0].replace("domain_C/", ""), "warm")]  # spelled another way
    csv = _csv(tmp_path / "c.csv", rows)
    assert fit_eval(root, tmp_path / "a", "--condition-csv", str(csv)) == 2
    err = capsys.readouterr().err
    assert f"c.csv:{len(rows) + 1}:" in err and "line 2 made the same map cold" in err


def test_a_csv_with_a_byte_order_mark_is_read_and_unknown_conditions_are_noted(root, tmp_path, capsys):
    tails = _test_tails(root)
    csv = tmp_path / "bom.csv"
    rows = [(t, "unknown" if i == 0 else ("cold" if int(Path(t).stem) < 6 else "warm")) for i, t in enumerate(tails)]
    csv.write_text("\ufeffpath,condition\n" + "".join(f"{p},{c}\n" for p, c in rows), encoding="utf-8")
    assert fit_eval(root, tmp_path / "a", "--condition-csv", str(csv)) == 0
    notes = json.loads((tmp_path / "a" / "metrics.json").read_text())["notes"]
    assert any("1 test map(s) have the condition unknown" in note for note in notes)


@pytest.mark.parametrize("name, words", [("\u0661\u0662.tiff", "not a numeric index"),  # Arabic-Indic digits
                                         ("0_0_7.tiff", "not a numeric index"),
                                         ("1.tiff", "index 1 is also 000001.tiff")])
def test_a_map_name_that_is_not_one_plain_index_is_named(name, words, root, tmp_path, capsys):
    shutil.copy(tiff(root, "test/good", 1), Path(root) / "domain_C" / "test" / "good" / name)
    assert fit_eval(root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert name in err and words in err


def test_a_map_linked_under_two_names_is_named(root, tmp_path, capsys):
    import os

    os.link(tiff(root, "test/good", 2), Path(root) / "domain_C" / "train" / "good" / "000777.tiff")  # test = train
    assert fit_eval(root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "000777.tiff" in err and "(a link)" in err


@pytest.mark.parametrize("damage, words", [(lambda m: np.zeros_like(m), "1 map(s) constant"),
                                           (lambda m: -np.abs(m) - 0.1, "1 map(s) without a positive value")])
def test_a_map_no_energy_map_can_be_is_named_in_the_notes(damage, words, root, tmp_path):
    path = tiff(root, "train/good", 4)
    tifffile.imwrite(path, damage(tifffile.imread(path)).astype(np.float32))
    # (the odd map is a condition of its own to the gate: uniform references keep the run going)
    assert fit_eval(root, tmp_path / "run", sets=["model.reference_sampling=uniform"]) == 0
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert any(words in note and str(path) in note for note in notes)


def test_a_full_disk_while_writing_the_run_names_the_folder_and_leaves_it_as_it_was(root, tmp_path, capsys,
                                                                                   monkeypatch):
    import torch

    out = tmp_path / "run"
    assert fit_eval(root, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):  # what torch.save says on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full)
    assert fit_eval(root, out, "--overwrite", sets=["model.band_weight=0"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: could not write the run's results (RuntimeError: [enforce fail" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old run untouched
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_a_tap_the_backbone_does_not_have_is_named_with_the_range(root, tmp_path, capsys):
    assert fit_eval(root, tmp_path / "run", sets=["backbone.taps=[0,99]"]) == 2
    err = capsys.readouterr().err
    assert "config key 'backbone.taps'" in err and "[99] not among the 2 blocks" in err and "taps 0..1" in err


@pytest.mark.parametrize("setting, named", [("split.seed=-1", "'split.seed' expects [0, inf)"),
                                            ("backbone.taps=[]", "'backbone.taps' expects items >= 0; at least 1"),
                                            ("model.seed=-3", "'model.seed' expects [0, inf)")])
def test_a_negative_seed_or_no_tap_is_named(setting, named, root, tmp_path, capsys):
    assert fit_eval(root, tmp_path / "a", "--set", setting) == 2
    assert named in capsys.readouterr().err


def test_a_band_top_k_beyond_the_rows_is_noted(root, tmp_path):
    assert main(["fit-eval", "--data-root", str(root), "--model", "band", "--out", str(tmp_path / "a"),
                 "--set", "band.image_score=top", "--set", "band.top_k=1000"]) == 0
    notes = json.loads((tmp_path / "a" / "metrics.json").read_text())["notes"]
    assert any("band.top_k=1000 is more than the 31 lines" in note for note in notes)


def test_a_yaml_merge_key_is_yaml_and_a_latin1_condition_csv_is_named(root, tmp_path, capsys):
    merged = tmp_path / "m.yaml"
    merged.write_text("model_name: band\nsplit:\n  <<: {seed: 5, tune_fraction: 0.3}\n  tune_fraction: 0.4\n")
    assert main(["fit-eval", "--data-root", str(root), "--config", str(merged), "--out", str(tmp_path / "b")]) == 0
    split = json.loads((tmp_path / "b" / "metrics.json").read_text())["split"]
    assert split["seed"] == 5 and split["tune_fraction"] == 0.4  # merged, and overridden by the mapping's own key
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,condition\ndomain_C/test/good/000000.tiff,kält\n".encode("latin-1"))
    assert fit_eval(root, tmp_path / "c", "--condition-csv", str(latin)) == 2
    assert "latin.csv: not UTF-8 text" in capsys.readouterr().err


def test_compare_with_too_few_bootstrap_draws_is_named(root, tmp_path, capsys):
    assert main(["fit-eval", "--data-root", str(root), "--model", "band", "--out", str(tmp_path / "a")]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--n-boot", "0"]) == 2
    assert "--n-boot expects an integer >= 100" in capsys.readouterr().err


def test_keep_defaults_within_nan_is_named(tmp_path):
    from hdmap.tune.runner import SearchOptions, run_search

    with pytest.raises(ConfigError, match="--keep-defaults-within expects a finite number >= 0"):
        run_search(SearchOptions(model="band", keep_defaults_within=float("nan"), storage=str(tmp_path)))


@pytest.mark.parametrize("param, named", [("model.reweight_k: {uniform: [1, 9]}", "an integer setting: search it "
                                                                                   "with int"),
                                          ("image_size: {uniform: [224, 448], step: -14}", "step must be a positive"),
                                          ("image_size: {int: [224, 448], step: 'x'}", "step must be a positive")])
def test_a_search_space_range_that_cannot_be_sampled_is_named(param, named, tmp_path):
    from hdmap.tune.spaces import load_space

    space = tmp_path / "s.yaml"
    space.write_text(f"model_name: patchcore\nparams:\n  {param}\n")
    with pytest.raises(ConfigError, match=named):
        load_space(space)


def test_a_map_too_small_for_a_band_and_a_broken_split_or_summary_file_are_named(root, tmp_path, capsys):
    import tifffile

    tiny = root / "domain_C" / "train" / "good" / "000000.tiff"
    tifffile.imwrite(tiny, np.ones((1, 95), dtype=np.float32))
    others = sorted(tiny.parent.glob("*.tiff"))[1:] + sorted((root / "domain_C" / "test").rglob("*.tiff"))
    for number, path in enumerate(others, 1):  # distinct maps (the same bytes twice is another error)
        tifffile.imwrite(path, np.ones((1, 95), dtype=np.float32) * number)
    assert fit_eval(root, tmp_path / "a") == 2
    assert "000000.tiff: map size 1x95; hdmap needs at least 3 rows" in capsys.readouterr().err
    split = tmp_path / "split.json"
    split.write_text('{"seed": 0, "tune_frac')
    assert main(["fit-eval", "--model", "band", "--split", str(split), "--out", str(tmp_path / "b")]) == 2
    assert "split.json: not a split.json hdmap wrote" in capsys.readouterr().err
    search = tmp_path / "search"
    search.mkdir()
    (search / "summary.json").write_text("[1, 2]")
    assert main(["eval", str(search)]) == 2
    assert "summary.json: not a summary.json hdmap wrote" in capsys.readouterr().err


def test_an_optuna_storage_url_that_cannot_be_opened_is_named_before_ray(tmp_path):
    from hdmap.tune.runner import SearchOptions, run_search

    with pytest.raises(ConfigError, match="--optuna-storage foo://x: not a database URL"):
        run_search(SearchOptions(model="band", optuna_storage="foo://x", storage=str(tmp_path)))


def test_a_map_in_train_and_test_or_under_two_labels_is_named_or_noted_when_allowed(root, tmp_path, capsys):
    import shutil as sh

    fault = root / "domain_C" / "test" / "fault" / "000001.tiff"
    sh.copyfile(fault, root / "domain_C" / "train" / "good" / "000003.tiff")  # a test fault fitted as a reference
    assert main(["fit-eval", "--data-root", str(root), "--model", "band", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "train/good/000003.tiff" in err and "test/fault/000001.tiff hold the same bytes" in err
    assert "--allow-duplicates" in err and not (tmp_path / "a").exists()
    assert main(["fit-eval", "--data-root", str(root), "--model", "band", "--out", str(tmp_path / "a"),
                 "--allow-duplicates"]) == 0
    notes = json.loads((tmp_path / "a" / "metrics.json").read_text())["notes"]
    assert any(note.startswith("--allow-duplicates:") and "000003.tiff" in note for note in notes)
    assert main(["eval", str(tmp_path / "a"), "--out", str(tmp_path / "e")]) == 0  # the run's own allowance
    sh.copyfile(root / "domain_C" / "test" / "good" / "000002.tiff", fault)  # one map, two labels
    assert main(["fit-eval", "--data-root", str(root), "--model", "band", "--out", str(tmp_path / "b")]) == 2
    assert "(test/good and test/fault)" in capsys.readouterr().err


@pytest.mark.parametrize("setting, named", [
    ("feclip.taps=[9]", "'feclip.taps' [9]: the CLIP tower has 2 blocks"),
    ('feclip.prompts=["only one"]', "'feclip.prompts' expects two texts"),
    ("feclip.band=[[1, 0], [1]]", "'feclip.band': an explicit mask is a 3 x 3"),
    ("feclip.band=wide", "'feclip.band' expects all, low, mid, high"),
    ("feclip.clip_kwargs.bogus=1", "bogus"),
    ("feclip.clip_model=ViT-Q-99", "open_clip knows no model 'ViT-Q-99'"),
])
def test_feclip_settings_its_model_cannot_take_are_named(setting, named):
    from hdmap.config import merge, parse_set
    from hdmap.kinds.feclip.model import TINY_CLIP
    from hdmap.kinds.registry import default_config, validate

    config = merge(default_config(model_name="feclip"), {"feclip": TINY_CLIP})
    if setting.startswith(("feclip.clip_model", "feclip.clip_kwargs")):
        config["feclip"]["clip_kwargs"] = {}  # the named model's path (clip_kwargs empty)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        validate(merge(config, parse_set([setting])))


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n" \
       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"


def test_a_yaml_bomb_and_a_weights_file_that_is_not_one_are_named(root, tmp_path, capsys):
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB)
    assert fit_eval(root, tmp_path / "a", "--config", str(config)) == 2
    assert "bomb.yaml: not valid YAML (the document expands to more than" in capsys.readouterr().err
    inline = "[" + BOMB.replace("\n", ", ").rstrip(", ") + "]"
    assert fit_eval(root, tmp_path / "a", "--set", "backbone.model_kwargs={" + inline[1:-1] + "}") == 2
    assert "expands to more than" in capsys.readouterr().err
    text = tmp_path / "weights.pth"
    text.write_text("these are not weights\n")
    assert main(["fit-eval", "--data-root", str(root), "--out", str(tmp_path / "b"), "--set", "image_size=56",
                 "--set", f"backbone.weights={text}"]) == 2
    assert "weights.pth: not a weights file torch loads as data only" in capsys.readouterr().err
    import pickle

    crafted = tmp_path / "crafted.pth"
    crafted.write_bytes(pickle.dumps(Payload(tmp_path / "payload_ran")))
    assert main(["fit-eval", "--data-root", str(root), "--out", str(tmp_path / "c"), "--set", "image_size=56",
                 "--set", f"backbone.weights={crafted}"]) == 2
    assert "crafted.pth: not a weights file" in capsys.readouterr().err and not (tmp_path / "payload_ran").exists()
    assert fit_eval(root, tmp_path / "d", "--set", "model.shots.max=4") == 2  # a nested key on a scalar (TINY sets
    assert "config key 'model.shots.max': 'model.shots' is a single value (3)" in capsys.readouterr().err  # shots=3)
    assert main(["fit-eval", "--model", "band", "--out", str(tmp_path / "e"), "--set", "split.seed.x=1"]) == 2
    assert "config key 'split.seed' expects int, got {'x': 1}" in capsys.readouterr().err

