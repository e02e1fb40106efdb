"""SIGTERM (a scheduler, `timeout`, a preempted node) in the middle of a fit or of feature extraction: exit 143 and
one line naming it, no run folder, no half-written file in the feature cache."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_BACKBONE_SETS

REPO = Path(__file__).resolve().parents[1]
# runs `hdmap fit-eval` with one stage made slow, after writing a marker file: the test terminates it there
RUNNER = """
import sys, time
from pathlib import Path
marker, stage, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
import importlib
module, owner_name, method = {"fit": ("hdmap.models.memory_bank", "MemoryBank", "fit"),
                              "features": ("hdmap.features.cache", "FeatureCache", "_extract")}[stage]
owner = getattr(importlib.import_module(module), owner_name)
original = getattr(owner, method)
def slow(self, *args, **kwargs):
    marker.write_text(stage)
    time.sleep(60)
    return original(self, *args, **kwargs)
setattr(owner, method, slow)
from hdmap.cli.main import main
sys.exit(main(argv))
"""


@pytest.mark.parametrize("stage", ["fit", "features"])
def test_sigterm_ends_the_command_with_143_naming_it_and_nothing_half_written(stage, synth_root, tmp_path):
    marker, out, cache = tmp_path / "marker", tmp_path / "run", tmp_path / "cache"
    argv = ["fit-eval", "--data-root", str(synth_root), "--domain", "C", "--out", str(out), "--cache-dir", str(cache)]
    for setting in TINY_BACKBONE_SETS + ["image_size=112"]:
        argv += ["--set", setting]
    process = subprocess.Popen([sys.executable, "-c", RUNNER, str(marker), stage, *argv], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()[1][-2000:]
    started = time.time()
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    assert time.time() - started < 30  # at once, not after the slow stage
    last = err.strip().splitlines()[-1]
    assert last.startswith("hdmap fit-eval: terminated: SIGTERM received") and "nothing half-written" in last
    assert not out.exists()
    assert not [p for p in cache.rglob("*") if ".partial" in p.name]
    for meta in cache.rglob("meta.json"):  # any entry present is whole
        assert json.loads(meta.read_text())["taps"]
