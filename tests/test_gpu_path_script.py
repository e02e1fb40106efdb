"""benchmarks/gpu_path.py as the GPU machine runs it: no Ray, Optuna, open_clip, faiss, matplotlib, rich or pandas. Its fit part
runs every step (here on tiny data, on the CPU: `--dry-run`) and its table comes out with the search skipped."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCKER = """
import importlib.metadata as metadata, runpy, sys
BLOCKED = ("ray", "optuna", "open_clip", "open_clip_torch", "faiss", "faiss-cpu", "matplotlib", "rich", "pandas")
for name in BLOCKED:  # as if not installed: `import` fails, importlib.util.find_spec says None (torch probes pandas)
    sys.modules[name] = None
real = metadata.distribution
def distribution(name):  # and no package metadata (what torchmetrics and lightning check first)
    if name.replace("_", "-").lower() in BLOCKED or name in BLOCKED:
        raise metadata.PackageNotFoundError(name)
    return real(name)
metadata.distribution = distribution
import hdmap.cli.main  # the console entry point of `hdmap fit-eval`
sys.argv = ["gpu_path.py", "--dry-run", "--out", sys.argv[1]]
runpy.run_path("benchmarks/gpu_path.py", run_name="__main__")
"""


def test_the_fit_part_runs_with_only_what_the_gpu_machine_has(tmp_path):
    out = tmp_path / "gpu_path.md"
    done = subprocess.run([sys.executable, "-c", BLOCKER, str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| defaults, cold |" in text and "| most expensive, warm |" in text
    assert "Search rows skipped: Ray is not installed here." in text
    assert "'knn': 'torch'" in text  # no faiss: the exact torch kNN, and the reason recorded
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    column = [c.strip() for c in header.strip("|").split("|")].index("coreset_x_bound")
    cold = next(line for line in text.splitlines() if line.startswith("| defaults, cold |"))
    assert [c.strip() for c in cold.strip("|").split("|")][column] not in ("", "n/a")  # the bound is filled
