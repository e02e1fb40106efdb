"""One fit spread over a Ray cluster (`hdmap fit-eval --address ADDR`): the fit's stages hand their tasks here
(feature extraction in shards: features/cache.py; the coreset's windows: models/bank_stream.py) and they run as Ray
tasks on the cluster's GPUs (or CPUs); the driver keeps writing the cache, taking the union and building the banks.
Ray retries a task whose worker died (`max_retries`); every task is a pure function of its inputs (seeded), so a
retried task returns the same result and the bank does not depend on where or how often its tasks ran.
"""
from __future__ import annotations

import contextlib
from collections import Counter, deque

import torch

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


class Spread:
    """Tasks on the Ray cluster this process joined. A task function returns (its result, node_id()); `log` counts
    what ran where ({stage: Counter(node: tasks)}); `wraps` ({stage: wrapper of the task function}) lets tests
    inject worker deaths."""

    def __init__(self, max_in_flight: int | None = None, resources: dict | None = None,
                 strategy: str | None = "SPREAD"):
        """On the whole cluster by default (one GPU or one CPU a task, SPREAD over the nodes); inside a Tune trial,
        `resources` of one of the trial's task bundles and no strategy (its tasks then run in the trial's
        placement group, on the bundles it reserved for them)."""
        import ray

        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.resources = resources or ({"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1})
        workers = gpus or int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or 2 * max(1, workers)
        self.strategy = strategy
        self.wraps: dict = {}
        self.log: dict[str, Counter] = {}

    def submit(self, stage: str, fn, *args):
        """Start `fn(*args)` as a Ray task (spread over the nodes, retried on worker death); returns its ref."""
        import ray

        fn = self.wraps.get(stage, lambda task: task)(fn)
        placement = {"scheduling_strategy": self.strategy} if self.strategy else {}
        return ray.remote(max_retries=RETRIES, **placement, **self.resources)(fn).remote(*args)

    def result(self, stage: str, ref):
        import ray

        value, node = ray.get(ref)
        self.log.setdefault(stage, Counter())[node] += 1
        return value

    def ordered(self, stage: str, fn, calls: list[tuple]):
        """The results of fn(*args) for each args of `calls`, in order, at most `max_in_flight` tasks at once."""
        pending = deque()
        for args in calls:
            pending.append(self.submit(stage, fn, *args))
            if len(pending) >= self.max_in_flight:
                yield self.result(stage, pending.popleft())
        while pending:
            yield self.result(stage, pending.popleft())

    def summary(self) -> dict:
        return {stage: dict(counts) for stage, counts in self.log.items()}


_ACTIVE: list[Spread] = []


def active() -> Spread | None:
    return _ACTIVE[-1] if _ACTIVE else None


def trial_bundles(tasks: int, cpus: float, gpus: float) -> list[dict]:
    """A Tune trial's placement group bundles: its own, then `tasks` more like it for its fit's tasks."""
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return [dict(bundle) for _ in range(1 + tasks)]


@contextlib.contextmanager
def spreading_in_trial(tasks: int, cpus: float, gpus: float):
    """Inside a Tune trial that reserved `tasks` task bundles (trial_bundles): spread its fit over them."""
    if tasks <= 0:
        yield None
        return
    resources = {"num_cpus": cpus, **({"num_gpus": gpus} if gpus else {})}
    spread = Spread(max_in_flight=tasks, resources=resources, strategy=None)
    _ACTIVE.append(spread)
    try:
        yield spread
    finally:
        _ACTIVE.remove(spread)


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
