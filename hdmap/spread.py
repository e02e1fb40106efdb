"""One fit spread over a Ray cluster (`hdmap fit-eval --address ADDR`): feature extraction in shards and the coreset's
window stage (bank_stream.py) as Ray tasks on the cluster's GPUs (or CPUs); the driver writes the cache, takes the
union and builds the banks. Ray retries a task whose worker died (`max_retries`); every task is a pure function of
its inputs (seeded), so a retried task returns the same result and the bank does not depend on where or how often
its tasks ran.

Shards are whole feature-extraction batches, so each map meets the backbone in the batch it meets without Ray.
"""
from __future__ import annotations

import contextlib
from collections import Counter

import torch

from hdmap.data.errors import HDMAPFileError

MAPS_PER_SHARD = 512  # maps per extraction task (rounded to whole batches)
RETRIES = 3  # Ray task retries after a worker or node dies


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def task_device() -> str:
    """The GPU Ray gave this task, else the CPU; a GPU given but unusable is an error, never a CPU fallback."""
    import ray

    if not ray.get_gpu_ids():
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(f"Ray gave this task GPU {ray.get_gpu_ids()} on node {node_id()}, but torch cannot use it "
                           f"(torch {torch.__version__}, CUDA build {torch.version.cuda}): see docs/gpus.md")
    return "cuda"


def extract_shard(spec, transform, paths: list[str], condition_stats, batch_size: int) -> tuple[list, str]:
    """(one float16 array per tap of these maps, the node that computed them)."""
    from hdmap.features.cache import FeatureCache

    cache = FeatureCache(enabled=False, batch_size=batch_size, progress=False)
    return cache._extract(spec, transform, paths, condition_stats, task_device()), node_id()


def window_picks(window: torch.Tensor, seed: int, projection_dim, n_total: int, size: int) -> tuple:
    """(the window's picks (indices), their patches, the node): composable greedy's chunk stage on one window."""
    from hdmap.models.bank_stream import window_picks as picks_of

    device = task_device()
    picks = picks_of(window.to(device), seed, projection_dim, n_total, size).cpu()
    return picks, window[picks].clone(), node_id()


class Spread:
    """Tasks on the Ray cluster this process joined; `log` counts what ran where ({stage: Counter(node: tasks)})."""

    def __init__(self, max_in_flight: int | None = None):
        import ray

        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.resources = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
        workers = gpus or int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or 2 * max(1, workers)
        self.extract_fn, self.window_fn = extract_shard, window_picks  # replaceable (tests inject worker deaths)
        self.log: dict[str, Counter] = {"features": Counter(), "coreset windows": Counter()}

    def _remote(self, fn):
        import ray

        return ray.remote(max_retries=RETRIES, scheduling_strategy="SPREAD", **self.resources)(fn)

    def extract(self, spec, transform, paths: list[str], condition_stats, batch_size: int, outputs_for, progress):
        """Extract `paths` in shards of whole batches; `outputs_for(first shard's grids)` -> the arrays to fill."""
        import ray

        shard = max(1, MAPS_PER_SHARD // batch_size) * batch_size
        starts = list(range(0, len(paths), shard))
        remote = self._remote(self.extract_fn)
        outputs, pending = None, {}
        for position, start in enumerate(starts + [None] * self.max_in_flight):
            if start is not None:
                pending[start] = remote.remote(spec, transform, paths[start:start + shard], condition_stats,
                                               batch_size)
            if len(pending) >= self.max_in_flight or (start is None and pending):
                first = min(pending)
                grids, node = ray.get(pending.pop(first))
                outputs = outputs if outputs is not None else outputs_for(grids)
                for output, grid in zip(outputs, grids):
                    if grid.shape[1:] != output.shape[1:]:
                        raise HDMAPFileError(f"{paths[first]}: its shard's features {grid.shape[1:]} differ from "
                                             f"{output.shape[1:]} of the first maps (maps of another size?)")
                    output[first:first + len(grid)] = grid
                self.log["features"][node] += 1
                progress.advance(len(grids[0]))
        return outputs

    def submit_window(self, window: torch.Tensor, seed: int, projection_dim, n_total: int, size: int):
        return self._remote(self.window_fn).remote(window.cpu(), seed, projection_dim, n_total, size)

    def window_result(self, ref) -> tuple[torch.Tensor, torch.Tensor]:
        import ray

        picks, patches, node = ray.get(ref)
        self.log["coreset windows"][node] += 1
        return picks, patches

    def summary(self) -> dict:
        return {stage: dict(counts) for stage, counts in self.log.items()}


_ACTIVE: list[Spread] = []


def active() -> Spread | None:
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def spreading(address: str | None):
    """Join the Ray cluster at `address` for the block and spread the fit over it; None: nothing is spread."""
    if not address:
        yield None
        return
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, logging_level="WARNING", configure_logging=True, log_to_driver=False)
    spread = Spread()
    _ACTIVE.append(spread)
    try:
        yield spread
    finally:
        _ACTIVE.remove(spread)
        if started:
            ray.shutdown()

