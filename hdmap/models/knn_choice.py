"""Which exact kNN runs for a bank on a device, and why: faiss where the installed build can serve the device, else
torch (exact too, chunked to bounded memory).

A faiss GPU build carries kernels for a range of compute capabilities only (the PyPI wheels `faiss-gpu-cu12` /
`-cu11` 1.8-1.14: 7.0-8.9, no Hopper, no PTX); on a GPU outside its range its first kernel aborts the process. So
faiss GPU runs only on a device whose capability lies inside the range the installed distribution's metadata states,
read before any faiss GPU call; a build whose range cannot be read (built from source, conda) is trusted only when
HDMAP_FAISS_GPU=1 says the user has checked it.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from importlib import metadata

import torch

try:
    import faiss
    import faiss.contrib.torch_utils  # noqa: F401 - faiss indexes then take and return torch tensors
except ImportError:  # the base install works without faiss (torch kNN); the `cpu` extra adds it
    faiss = None

FAISS_GPU_DISTRIBUTIONS = ("faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu")
TRUST_FAISS_GPU = "HDMAP_FAISS_GPU"  # =1: use a faiss GPU build whose capability range its metadata does not state
_RANGE = re.compile(r"Compute Capability\s*(\d+)\.(\d+)\s*[-\u2013\u2014~]+\s*(\d+)\.(\d+)")


@dataclass(frozen=True)
class KnnChoice:
    backend: str  # faiss-gpu | faiss-cpu | torch
    reason: str


def faiss_gpu_build() -> bool:
    return faiss is not None and hasattr(faiss, "StandardGpuResources")


@functools.lru_cache(maxsize=1)
def faiss_gpu_capability_range() -> tuple[str, tuple[int, int], tuple[int, int]] | None:
    """(distribution, lowest, highest compute capability) that the installed faiss GPU wheel says it supports, read
    from its package metadata; None when no such distribution (or no stated range) is installed."""
    for name in FAISS_GPU_DISTRIBUTIONS:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        text = " ".join(str(meta.get(key, "")) for key in ("Summary", "Description")) + " " + (meta.get_payload() or "")
        found = _RANGE.search(text)
        if found:
            low, high = (int(found[1]), int(found[2])), (int(found[3]), int(found[4]))
            return name, low, high
    return None


def _gpu_choice(device: torch.device) -> KnnChoice:
    if not faiss_gpu_build():
        return KnnChoice("torch", "no faiss GPU build installed: exact torch kNN on the GPU")
    capability = tuple(torch.cuda.get_device_capability(device))
    shown = f"{capability[0]}.{capability[1]}"
    stated = faiss_gpu_capability_range()
    if stated is None:
        if os.environ.get(TRUST_FAISS_GPU) == "1":
            return KnnChoice("faiss-gpu", f"{TRUST_FAISS_GPU}=1: the user vouches for this faiss build on "
                                          f"compute capability {shown}")
        return KnnChoice("torch", f"the installed faiss GPU build states no compute capability range, so it may "
                                  f"abort on {shown}: exact torch kNN (set {TRUST_FAISS_GPU}=1 to use it)")
    name, low, high = stated
    if not low <= capability <= high:
        return KnnChoice("torch", f"{name} supports compute capability {low[0]}.{low[1]}-{high[0]}.{high[1]}, this "
                                  f"GPU is {shown}: exact torch kNN")
    if faiss.get_num_gpus() <= (device.index or 0):
        return KnnChoice("torch", f"faiss sees {faiss.get_num_gpus()} GPU(s), not {device}: exact torch kNN")
    return KnnChoice("faiss-gpu", f"{name} supports compute capability {shown}")


def knn_choice(device: torch.device | str) -> KnnChoice:
    """The exact kNN for a bank on `device`, with the reason (recorded in metrics.json)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _gpu_choice(device if device.index is not None else torch.device("cuda", torch.cuda.current_device()))
    if faiss is not None and device.type == "cpu":
        return KnnChoice("faiss-cpu", "faiss installed")
    return KnnChoice("torch", "faiss not installed" if faiss is None else f"faiss has no index on {device.type}")
