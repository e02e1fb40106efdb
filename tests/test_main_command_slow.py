"""The README's main command on the embedded synthetic data with the offline backbone (opt-in: -m slow)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tune_domainC_default_runs_and_prints_holdout(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "experiments" / "tune_domainC.py"), "--num-samples", "3",
                             "--storage", str(tmp_path / "runs")], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "holdout (n=280, threshold from tune)" in result.stdout
    assert "best checkpoint:" in result.stdout
    run_dir = next((tmp_path / "runs").iterdir())
    evaluated = subprocess.run([sys.executable, str(REPO / "experiments" / "eval_best.py"), str(run_dir)],
                               capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("holdout"))
    accuracy = line.split("accuracy ")[1].split(" %")[0]
    assert f"accuracy {accuracy} %" in evaluated.stdout  # eval_best reproduces the search's holdout number
