"""A trial sees exactly the GPUs Ray gave it, caps its torch memory to its share, and says where it ran.

A trial given a GPU its torch cannot use fails as its own error (hdmap/tune/gpu_check.py), never a silent run on the
CPU. Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone in a task given 0 GPUs (every GPU of the node stays visible, and
Lightning's `auto` would take GPU 0): a trial with no GPU hides them all and runs on the CPU; a trial with GPUs runs
on them (Ray makes them devices 0..n-1 of the process). The accelerator goes to every Trainer of the trial through
HDMAP_ACCELERATOR (hdmap/run/trainer.py), so no fit or score falls back to `auto`.
"""
from __future__ import annotations

import os
import socket

import torch

from hdmap.run.trainer import ACCELERATOR_ENV
from hdmap.tune.gpu_check import ALLOW_CPU_ENV, CONTEXT_BYTES, cpu_allowed, cuda_report, unusable_reason

GPU_MEMORY_SETTINGS = ("--max-concurrent (fewer trials per GPU) or a larger --gpus-per-trial", "model.bank_size",
                       "image_size", "model.shots")


MIN_CAP = 0.02


class TrialGpuUnusableError(RuntimeError):
    """Ray gave the trial a GPU its torch cannot use (driver, CUDA build): never a silent run on the CPU."""


class TrialGpuMemoryError(RuntimeError):
    """CUDA ran out of memory in the trial's own code: its settings need more than its GPU share holds."""


def assigned_gpu_ids() -> list[str]:
    import ray

    if not ray.is_initialized():
        return []
    return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def confine(gpu_ids: list[str], gpu_share: float) -> dict:
    """Make this process see only `gpu_ids` and pick its accelerator; cap torch's memory to `gpu_share` of the GPU
    less the CUDA context (a share below 1: `memory_cap`). Returns the trial's placement record (trial_metrics.json,
    summary.md)."""
    note = ""
    if not gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything in this trial touches CUDA
        accelerator = "cpu"
    elif torch.cuda.is_available():
        accelerator = "gpu"
        if 0 < gpu_share < 1:
            torch.cuda.set_per_process_memory_fraction(memory_cap(gpu_share), 0)
    elif cpu_allowed():
        accelerator = "cpu"
        note = (f"Ray gave this trial GPU {','.join(gpu_ids)} but torch sees no CUDA: it ran on the CPU "
                f"({ALLOW_CPU_ENV}=1)")
    else:
        raise TrialGpuUnusableError(f"Ray gave this trial GPU {','.join(gpu_ids)}: {unusable_reason(cuda_report())}")
    os.environ[ACCELERATOR_ENV] = accelerator
    device = "cuda" if accelerator == "gpu" else "cpu"
    return {"node_id": _node_id(), "host": socket.gethostname(), "device": device, "gpu_ids": ",".join(gpu_ids),
            "gpu_name": torch.cuda.get_device_name(0) if device == "cuda" else "",
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_share": gpu_share if device == "cuda" else 0.0, "placement_note": note}


def memory_cap(share: float) -> float:
    """The fraction of the GPU's memory torch may take: the share less what every process holds outside torch's
    allocator (its CUDA context and kernels, CONTEXT_BYTES), so that the trials sharing a GPU fit on it together."""
    total = torch.cuda.get_device_properties(0).total_memory
    return max(MIN_CAP, share - CONTEXT_BYTES / total)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def reset_peak_memory(placement: dict) -> None:
    if placement["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats(0)


def peak_memory(placement: dict) -> dict:
    """The trial's peak memory: on a GPU, what torch reserved at most (the CUDA context and any faiss scratch come on
    top: `faiss_scratch_bytes`); on the CPU, the process's peak resident set."""
    if placement["device"] == "cuda":
        from hdmap.models.memory_bank import faiss_gpu_scratch_bytes

        return {"device": "cuda", "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(0)),
                "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(0)),
                "faiss_scratch_bytes": faiss_gpu_scratch_bytes()}
    import resource

    return {"device": "cpu", "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def gpu_memory_message(error: BaseException, placement: dict) -> str:
    share = placement.get("gpu_share") or 1.0
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"CUDA out of memory in this trial (GPU {placement.get('gpu_ids') or '?'}, a {share:g} share): {first}. "
            f"Lower one of: {'; '.join(GPU_MEMORY_SETTINGS)}")
