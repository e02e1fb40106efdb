"""benchmarks/gpu_path.py on a machine without CUDA: one line saying so, exit 0 (its GPU table needs a GPU)."""
import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_path.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real benchmark")
def test_gpu_benchmark_says_in_one_line_that_there_is_no_gpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_path", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]
