"""A non-editable install in a fresh venv searches and evaluates from another folder (opt-in: -m slow, minutes)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_plain_install_runs_tune_and_eval_from_another_folder(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], capture_output=True, text=True,
                         timeout=1800)
    assert pip.returncode == 0, pip.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HDMAP_CACHE": str(tmp_path / "cache")}
    hdmap = str(venv / "bin" / "hdmap")
    tune = subprocess.run([hdmap, "tune", "--num-samples", "2", "--storage", "runs", "--name", "plain"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=1800)
    assert tune.returncode == 0, tune.stderr[-3000:]
    assert "best checkpoint:" in tune.stdout
    evaluated = subprocess.run([hdmap, "eval", "runs/plain"], cwd=elsewhere, env=env, capture_output=True,
                               text=True, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    holdout = next(line for line in tune.stdout.splitlines() if line.startswith("holdout"))
    accuracy = holdout.split("accuracy ")[1].split(" %")[0]
    assert f"accuracy {accuracy} %" in evaluated.stdout
    assert (elsewhere / "runs" / "plain" / "eval_best" / "metrics.json").exists()
