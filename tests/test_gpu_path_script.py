"""benchmarks/gpu_path.py as the GPU machine runs it: no Ray, Optuna, open_clip or faiss importable. Its fit part
runs every step (here on tiny data, on the CPU: `--dry-run`) and its table comes out with the search skipped."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = ("ray", "optuna", "open_clip", "faiss")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on the GPU machine")
sys.meta_path.insert(0, Block())
import hdmap.cli.main  # the console entry point of `hdmap fit-eval`
sys.argv = ["gpu_path.py", "--dry-run", "--out", sys.argv[1]]
runpy.run_path("benchmarks/gpu_path.py", run_name="__main__")
"""


def test_the_fit_part_runs_without_ray_optuna_open_clip_and_faiss(tmp_path):
    out = tmp_path / "gpu_path.md"
    done = subprocess.run([sys.executable, "-c", BLOCKER, str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| defaults, cold |" in text and "| most expensive, warm |" in text
    assert "Search rows skipped: Ray is not installed here." in text
    assert "'knn': 'torch'" in text  # no faiss: the exact torch kNN, and the reason recorded
