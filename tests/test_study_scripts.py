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


# rows of each script's first table the arguments above ask for
ROWS = {"step0_data_sanity": 10, "step1_h1_features": 2, "h2_gating": 2, "step3_context": 4, "step4_feclip": 2,
        "feclip_learns_bands": None, "step6_invariant_inputs": 4, "shots_curve": None, "step5_all_domains": 4}


def tables(text: str) -> list[list[dict]]:
    """Each markdown table of a results file as a list of {column: cell} rows."""
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---") and \
                not (i and lines[i - 1].startswith("|")):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(header, (c.strip() for c in body.strip("|").split("|")))))
            found.append(rows)
    return found


def number(cell: str) -> float | None:
    """The first number of a cell ('62.5', '99.1 ± 1.3'), None for 'n/a' and the like."""
    try:
        return float(cell.split()[0])
    except (ValueError, IndexError):
        return None


def check_invariants(script: str, text: str) -> None:
    """What holds of any honest table: percentages within 0-100, tune-threshold accuracy never above the oracle's
    (whose threshold is chosen on the holdout scores themselves), the rows the arguments ask for."""
    every = tables(text)
    assert every, f"{script} wrote no table"
    if ROWS[script] is not None:
        assert len(every[0]) == ROWS[script], f"{script}: {len(every[0])} rows, expected {ROWS[script]}"
    for table in every:
        for row in table:
            for column, cell in row.items():
                if column.endswith("%") and (value := number(cell)) is not None:
                    assert 0.0 <= value <= 100.0, f"{script}: {column} = {cell}"
            held, oracle = number(row.get("holdout acc %", "")), number(row.get("oracle acc %", ""))
            if held is not None and oracle is not None:
                assert held <= oracle + 0.05, f"{script}: holdout accuracy {held} above the oracle's {oracle}: {row}"


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
    check_invariants(script, text)
    if script == "step0_data_sanity":
        check_data_sanity_values(text, synth_root)
    if script == "shots_curve":
        check_coreset_sizes(text)


def check_data_sanity_values(text: str, root) -> None:
    """Step 0's statistics of domain C's train maps equal numpy's on the TIFF files themselves."""
    import numpy as np
    import tifffile

    maps = np.stack([tifffile.imread(p) for p in sorted((root / "domain_C" / "train" / "good").glob("*.tiff"))])
    row = next(r for r in tables(text)[0] if r["domain"] == "C" and r["subset"] == "train")
    assert int(row["n"]) == len(maps)
    assert row["mean"] == f"{maps.mean():.3f}" and row["p90"] == f"{np.percentile(maps, 90):.3f}"
    assert row["max"] == f"{maps.max():.2f}"


def check_coreset_sizes(text: str) -> None:
    """The 10 % coreset keeps a tenth of the bank the same references give without one; all maps > 4 per condition."""
    rows = [r for r in tables(text)[0] if r["image score"] == "max"]
    size = {(r["shots/cond"], r["coreset"]): int(r["bank patches"]) for r in rows}
    for shots in ("4", "all"):
        assert abs(size[(shots, "10 %")] - 0.1 * size[(shots, "off")]) <= 1, size
    assert size[("all", "off")] > size[("4", "off")], size


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
    from hdmap.kinds.patchcore.kind import BASELINE_MODEL

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


def test_the_band_family_rule_takes_the_best_worst_family_among_the_near_best_means():
    """band_families.py's rule, fixed before its run: among candidates within 1 point of the best mean tune AUROC
    over the band families, the best worst family (not simply the best mean); the non-band families choose nothing."""
    band_families = importlib.import_module("band_families")
    tune = {  # candidate -> tune AUROC per family
        "family, per condition (defaults)": {"synth bands": 0.99, "drifting rows": 0.93, "spots": 0.50},
        "family, pooled, median/MAD": {"synth bands": 1.00, "drifting rows": 0.935, "spots": 0.99},
        "single, as before": {"synth bands": 1.00, "drifting rows": 0.80, "spots": 0.99},
    }

    def result(family: str) -> dict:
        band = {name: {"tune": {"auroc": tune.get(name, {}).get(family, 0.5)}}
                for name in band_families.BAND_CANDIDATES}
        return {"family": family, "metrics": {"band": band, **{name: {"tune": {"auroc": 0.5}}
                                                             for name in band_families.PATCHCORE_RUNS}}}

    results = [result(family) for family in ("synth bands", "drifting rows", "spots")]
    chosen, rows = band_families.choose_band_default(results)
    assert chosen == "family, pooled, median/MAD"  # best mean 0.9675 and best worst family 0.935
    tune["family, pooled, median/MAD"]["drifting rows"] = 0.90  # worst family now below the defaults' 0.93
    results = [result(family) for family in ("synth bands", "drifting rows", "spots")]  # its mean 0.95: eligible
    assert band_families.choose_band_default(results)[0] == "family, per condition (defaults)"
    assert {row["candidate"] for row in rows} == set(band_families.BAND_CANDIDATES)
