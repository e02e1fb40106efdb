"""Does one trial's request fit on one node of the Ray cluster? Ray places a trial on a single node; a request no
alive node can hold leaves every trial PENDING for ever, with nothing but Ray's table to say why. Refused before the
search starts, naming the flag and what the cluster's nodes have."""
from __future__ import annotations

from hdmap.config import ConfigError


def alive_resources(nodes: list[dict]) -> list[dict]:
    """The resources of each alive node of `ray.nodes()`."""
    return [node.get("Resources", {}) for node in nodes if node.get("Alive")]


def check_placeable(cpus: float, gpus: float, nodes: list[dict]) -> None:
    """A ConfigError unless some alive node has `cpus` CPUs and `gpus` GPUs (a fractional share fits any GPU)."""
    alive = alive_resources(nodes)
    if any(r.get("CPU", 0.0) >= cpus and r.get("GPU", 0.0) >= gpus for r in alive):
        return
    have = "; ".join(f"{r.get('CPU', 0.0):g} CPU, {r.get('GPU', 0.0):g} GPU" for r in alive) or "no alive node"
    wait = "every trial would wait for ever"
    if gpus > 0 and not any(r.get("GPU", 0.0) >= gpus for r in alive):
        raise ConfigError(f"--gpus-per-trial {gpus:g}: no node of the Ray cluster has {gpus:g} GPU(s) (its nodes: "
                          f"{have}); {wait}. On a cluster without GPUs use --gpus-per-trial auto or 0 (the CPU), or "
                          f"join one with GPUs (--address)")
    if not any(r.get("CPU", 0.0) >= cpus for r in alive):
        raise ConfigError(f"--cpus-per-trial {cpus:g}: no node of the Ray cluster has {cpus:g} CPUs (its nodes: "
                          f"{have}); {wait}. Ask for at most the CPUs of one node")
    raise ConfigError(f"--cpus-per-trial {cpus:g} with --gpus-per-trial {gpus:g}: no single node of the Ray cluster "
                      f"has both (its nodes: {have}); {wait}")
