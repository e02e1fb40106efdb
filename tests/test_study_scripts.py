"""Each study script runs on a tiny synthetic set in fast mode and writes its results table."""
import importlib
import sys
from pathlib import Path

import pytest

from conftest import TINY_BACKBONE_SETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

TINY_SETS = TINY_BACKBONE_SETS + ["image_size=112"]
CASES = {
    "step0_data_sanity": (["--domains", "AC"], ["| domain | subset | n | mean | p90 | max |",
                                                "| domain | p90 AUROC warm vs cold %"]),
    "step1_h1_features": (["--fast", "--shots", "4"], ["| backbone | tap | grid | patch AUROC % |"]),
    "h2_gating": ([f"--set={s}" for s in TINY_SETS] + ["--shots", "4", "--contexts", "0", "--banks", "mixed", "gated",
                                                       "--gates", "intensity"],
                  ["| shots/cond | bank | gate | context k | holdout acc % |"]),
    "step3_context": (["--fast", "--ks", "0", "2", "--shots", "4"], ["| taps | bank | context k | holdout acc % |"]),
    "step4_feclip": (["--fast", "--shots", "4"], ["| variant | holdout acc % |", "pipeline"]),
    "feclip_learns_bands": (["--fast", "--scores", "map_max"], ["| model | image score | tune AUROC % |",
                                                                "| untrained baseline", "tiny random CLIP (4 blocks",
                                                                "| adapters only (linear map frozen)", "adapters trained alone ("]),
    "step6_invariant_inputs": (["--fast", "--shots", "4", "--seeds", "0", "1", "--variants", "default (fit-eval)",
                                "mixed bank", "mixed + row profile", "mixed + band descriptor 1"],
                               ["| set | model | shots/cond | seeds |", "| C | mixed + row profile | 4 | 2 | ",
                                "Against one mixed bank", "- C, 4 shots/condition, default (fit-eval): ",
                                "At least as good as one mixed bank on every set (1 sets)"]),
    "shots_curve": ([f"--set={s}" for s in TINY_SETS] + ["--shots", "4", "all", "--scores-at", "4"],
                    ["| shots/cond | coreset | image score | domains |", "| 4 | off | max | 1 |",
                     "| all | 10 % | max | 1 |", "| 4 | 10 % | top 1 % | 1 |", "Rule (tune only):"]),
    "step5_all_domains": (["--fast", "--domains", "AC", "--set", "model.shots=4"],
                          ["| domain | model | holdout acc % |", "| A | best |", "| C | PatchCore baseline |"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_script_writes_its_table(script, synth_root, tmp_path):
    args, expected = CASES[script]
    out = tmp_path / f"{script}.md"
    module = importlib.import_module(script)
    assert module.main(["--data-root", str(synth_root), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
                       + args) == 0
    text = out.read_text()
    assert "- command:" in text and str(synth_root) in text
    for snippet in expected:
        assert snippet in text, f"{snippet!r} missing from {script}'s results"


def test_search_vs_default_and_repeats_noise_write_their_tables(synth_root, tmp_path):
    """The search study on tiny data (2 trials: the defaults and one sampled), then the seed-noise study on that
    search."""
    search_vs_default = importlib.import_module("search_vs_default")
    out = tmp_path / "svd.md"
    assert search_vs_default.main(["--data-root", str(synth_root), "--num-samples", "2", "--storage",
                                   str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| set | seed | winner |" in text and "| your data | 0 |" in text and "Search AUROC below the defaults" in text
    search = next((tmp_path / "runs").glob("search_*"))
    repeats_noise = importlib.import_module("repeats_noise")
    out = tmp_path / "noise.md"
    assert repeats_noise.main(["--run", str(search), "--repeats", "2", "--top", "2", "--cache-dir",
                               str(tmp_path / "c"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| trial | shots/cond | seed 0 % | seed 1 % |" in text and "Spearman" in text


def test_the_h2_table_reports_what_hdmap_fit_eval_measures_for_the_same_settings(synth_root, tmp_path):
    """A value, not a header: the H2 script's holdout accuracy of one grid cell equals `hdmap fit-eval` run with the
    same settings on the same split (an independent path through the console command)."""
    import json

    from hdmap.cli.main import main as hdmap_main
    from hdmap.evaluation.results_file import pct
    from hdmap.kinds.patchcore import BASELINE_MODEL

    out = tmp_path / "h2.md"
    h2 = importlib.import_module("h2_gating")
    assert h2.main(["--data-root", str(synth_root), "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                    "--shots", "4", "--contexts", "0", "--banks", "mixed", "--gates", "intensity"]
                   + [f"--set={s}" for s in TINY_SETS]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| 4 | mixed | intensity | 0 |"))
    table_accuracy = row.split("|")[5].strip()
    sets = TINY_SETS + [f"model.{k}={json.dumps(v)}" for k, v in BASELINE_MODEL.items()] + [
        "model.bank_mode=mixed", "model.shots=4", "model.context_ks=[0]", "model.gate.kind=intensity",
        "model.reference_sampling=per_condition"]
    args = ["fit-eval", "--data-root", str(synth_root), "--out", str(tmp_path / "run"), "--cache-dir",
            str(tmp_path / "c"), "--split", str(out.with_suffix(".split.json")), "--condition-csv",
            str(synth_root / "domain_C" / "train_conditions.csv"), "--condition-csv-partial"]
    for setting in sets:
        args += ["--set", setting]
    assert hdmap_main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert table_accuracy == f"{pct(metrics['holdout']['accuracy'])}"
