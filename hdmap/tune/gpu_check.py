"""Whether the GPUs Ray gives trials are GPUs torch can use. torch's Linux wheel is built for one CUDA version and
needs an NVIDIA driver at least as new as that CUDA's (the pinned 2.14.1: CUDA 13.0, driver >= 580); with an older
driver `torch.cuda.is_available()` is False and a trial would run on the CPU while Ray holds its GPU. A search checks
one GPU node before its trials start (`check_gpus_usable`) and a trial given a GPU it cannot use fails as its own
error (hdmap/tune/trial_devices.py), unless HDMAP_ALLOW_CPU_FOR_GPU=1 (a cluster layout tried on a machine without
GPUs: trials then run on the CPU, noted)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import torch

from hdmap.config import ConfigError

ALLOW_CPU_ENV = "HDMAP_ALLOW_CPU_FOR_GPU"
DRIVER_NEEDED = {13: "580", 12: "525.60.13", 11: "450.80.02"}  # Linux; CUDA's minor-version compatibility
PROBE_TIMEOUT_S = 180
CONTEXT_BYTES = 768 << 20  # a CUDA context with torch's kernels loaded, outside set_per_process_memory_fraction


def cpu_allowed() -> bool:
    return os.environ.get(ALLOW_CPU_ENV) == "1"


def installed_driver() -> str | None:
    """The NVIDIA kernel driver's version on this machine, None without one."""
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.is_file():
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", version_file.read_text())
        if found:
            return found.group(1)
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def cuda_report() -> dict:
    """What this process's torch can do with the GPUs it sees."""
    available = torch.cuda.is_available()
    return {"host": socket.gethostname(), "cuda_available": available, "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "driver": installed_driver(),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else [],
            "total_memory": torch.cuda.get_device_properties(0).total_memory if available else 0}


def unusable_reason(report: dict) -> str:
    """Why torch cannot use the GPUs of `report`, and what to do."""
    needed = DRIVER_NEEDED.get(int(str(report["torch_cuda"]).split(".")[0])) if report["torch_cuda"] else None
    if not report["torch_cuda"]:
        cause = f"torch {report['torch']} is a CPU-only build: install the CUDA wheel (pip install torch, Linux)"
    elif report["driver"] is None:
        cause = (f"no NVIDIA driver was found (torch {report['torch']} needs one for CUDA {report['torch_cuda']}"
                 + (f": >= {needed}" if needed else "") + ")")
    else:
        cause = (f"NVIDIA driver {report['driver']} found; torch {report['torch']} is built for CUDA "
                 f"{report['torch_cuda']}" + (f", which needs driver >= {needed}" if needed else "")
                 + ": update the driver, or install a torch wheel for an older CUDA (docs/gpus.md)")
    return f"torch cannot use the GPUs on {report['host']}: {cause}"


def check_gpus_usable(share: float) -> dict | None:
    """Before a search's trials start: a task given `share` of a GPU on the cluster reports whether its torch can
    use it; a ConfigError (exit 2) naming the host, driver and CUDA build when not. Returns its report (None
    without GPU trials)."""
    if share <= 0 or cpu_allowed():
        return None
    import ray

    probe = ray.remote(num_cpus=0, num_gpus=min(1.0, share))(cuda_report)
    try:
        report = ray.get(probe.remote(), timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ConfigError(f"--gpus-per-trial {share:g}: no GPU of the cluster answered within {PROBE_TIMEOUT_S} s "
                          f"(are its GPUs held by another job?)") from None
    if not report["cuda_available"]:
        raise ConfigError(f"--gpus-per-trial {share:g}: {unusable_reason(report)}; or use --gpus-per-trial 0 (the "
                          f"CPU), or set {ALLOW_CPU_ENV}=1 to try the cluster layout on the CPU")
    return report


def check_gpu_memory(needs: tuple[int, str] | None, share: float, total_memory: int) -> None:
    """A ConfigError when a kind's largest memory need in the space (`needs`: bytes and what drives them) exceeds a
    trial's share of the GPU (less its CUDA context), naming the settings to lower."""
    if not needs or not total_memory or share <= 0:
        return
    budget = min(1.0, share) * total_memory - CONTEXT_BYTES
    if needs[0] > budget:
        raise ConfigError(f"--gpus-per-trial {share:g} of a {total_memory / 2**30:.0f} GiB GPU leaves a trial "
                          f"{budget / 2**30:.1f} GiB; the space's largest setting needs about {needs[0] / 2**30:.1f} "
                          f"GiB ({needs[1]}): lower those settings in the space, or raise --gpus-per-trial")
