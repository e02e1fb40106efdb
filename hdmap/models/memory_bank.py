"""Memory bank of normal patch features: a coreset of them (hdmap/models/coreset.py), exact kNN on the bank's device,
PatchCore scoring.

kNN backends (hdmap/models/knn_choice.py decides, and says why): faiss GPU where the installed build serves the
device's compute capability, else torch on CUDA; a faiss CPU index where faiss is installed, else torch on CPU.
All are exact L2 searches on torch tensors where they live (faiss through faiss.contrib.torch_utils: no copy
to the host and back). A bank keeps one index per device for its current contents, so the index built on the GPU
survives Lightning moving the module back to the CPU after fit and predict; every GPU index of a process shares
one faiss resource object with bounded temporary memory.
"""
from __future__ import annotations

import torch

from hdmap.models.coreset import greedy_coreset
from hdmap.models.knn_choice import faiss, knn_choice
from hdmap.resizable_buffers import ResizableBuffers

TORCH_KNN_BLOCK = 1 << 24  # query x bank distances computed per block (64 MiB of float32)
EXACT_BLOCK = 1 << 24  # floats gathered at a time when the found members' distances are recomputed
GPU_TEMP_MEMORY = 256 << 20  # faiss GPU scratch memory per device (its default takes a share of the whole GPU)
_GPU_RESOURCES: dict[int, object] = {}  # CUDA device index -> the process's one faiss StandardGpuResources
_FAISS_GPU_INDEX_BYTES = [0]  # the largest bank a faiss GPU index of this process copied into faiss's own memory


class EmptyBankError(RuntimeError):
    """Scoring against a bank that holds no features."""


def set_cpu_threads(threads: int) -> None:
    """The CPU threads of torch and of faiss (which has its own OpenMP pool): a trial given n CPUs uses n, so two
    trials on two cores do not over-subscribe them."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)


def knn_backend(device: torch.device | str) -> str:
    """Which exact kNN runs for a bank on `device`: faiss-gpu, faiss-cpu or torch (knn_choice says why)."""
    return knn_choice(device).backend


def faiss_gpu_scratch_bytes() -> int:
    """GPU memory faiss holds outside torch's allocator: its scratch per device plus the largest index's copy."""
    return GPU_TEMP_MEMORY * len(_GPU_RESOURCES) + _FAISS_GPU_INDEX_BYTES[0]


def gpu_resources(device_index: int):
    """The one faiss GPU resource object of this process for a device, with bounded temporary memory."""
    if device_index not in _GPU_RESOURCES:
        resources = faiss.StandardGpuResources()
        resources.setTempMemory(GPU_TEMP_MEMORY)
        _GPU_RESOURCES[device_index] = resources
    return _GPU_RESOURCES[device_index]


class KnnIndex:
    """Exact L2 nearest neighbours among fixed `vectors`, searched on the vectors' device."""

    def __init__(self, vectors: torch.Tensor, backend: str | None = None):
        if vectors.shape[0] == 0:
            raise EmptyBankError("the memory bank is empty: fit the model on reference maps before scoring")
        self.vectors = vectors.detach().float()
        self.device = self.vectors.device
        self.backend = backend or knn_backend(self.device)
        self._faiss = None
        if self.backend == "faiss-cpu":
            self._faiss = faiss.IndexFlatL2(self.vectors.shape[1])
        elif self.backend == "faiss-gpu":
            config = faiss.GpuIndexFlatConfig()
            config.device = self.device.index or 0
            self._faiss = faiss.GpuIndexFlatL2(gpu_resources(config.device), self.vectors.shape[1], config)
            _FAISS_GPU_INDEX_BYTES[0] = max(_FAISS_GPU_INDEX_BYTES[0], self.vectors.numel() * 4)
        if self._faiss is not None:
            self.vectors = self.vectors.contiguous()
            self._faiss.add(self.vectors)  # a torch tensor on its own device

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, indices), each (Q, k), on the index's device."""
        k = min(k, len(self))
        queries = queries.detach().float().to(self.device)
        if self._faiss is not None:
            indices = self._faiss.search(queries.contiguous(), k)[1]
        else:
            rows = max(1, TORCH_KNN_BLOCK // len(self))
            indices = torch.cat([torch.cdist(queries[i:i + rows], self.vectors).topk(k, dim=1, largest=False).indices
                                 for i in range(0, len(queries), rows)])
        return self.exact_distances(queries, indices), indices

    def exact_distances(self, queries: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """(Q, k) distances of each query to its found members, each from the difference of the two vectors: the
        search's own distances come from |q|^2 + |m|^2 - 2 q.m, whose rounding depends on how many queries share
        a search (BLAS blocking), so a map's score would depend on the maps scored with it."""
        out = torch.empty(indices.shape, dtype=torch.float32, device=queries.device)
        rows = max(1, EXACT_BLOCK // max(1, indices.shape[1] * queries.shape[1]))
        for i in range(0, len(queries), rows):
            members = self.vectors[indices[i:i + rows]]  # (rows, k, D)
            out[i:i + rows] = torch.linalg.vector_norm(members - queries[i:i + rows, None, :], dim=2)
        return out


def knn(bank: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact L2 k nearest neighbours of `queries` in `bank` (a one-off index): (distances, indices), (Q, k)."""
    return KnnIndex(bank).search(queries, k)


class MemoryBank(ResizableBuffers):
    """Normal patch features as a buffer, so a checkpoint carries them; the kNN index follows the buffer's device."""

    def __init__(self, dim: int = 0):
        super().__init__()
        self.register_buffer("features", torch.zeros(0, dim))
        self.register_buffer("member_tags", torch.zeros(0, dtype=torch.long))  # e.g. condition of each member
        self._version = 0  # bumped whenever the members change (fit, load)
        self._indexes: dict[str, tuple[int, KnnIndex]] = {}  # device -> (version, index of that version)

    def __len__(self) -> int:
        return self.features.shape[0]

    def index(self) -> KnnIndex:
        """The kNN index of the current members on the buffer's device: built once per device and contents, so a
        module moved to the CPU and back (Lightning's teardown) finds its GPU index again."""
        device = str(self.features.device)
        version, index = self._indexes.get(device, (-1, None))
        if version != self._version or index is None:
            index = KnnIndex(self.features)
            self._indexes[device] = (self._version, index)
        return index

    def _members_changed(self) -> None:
        self._version += 1
        self._indexes = {}

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._members_changed()

    def fit(self, patches: torch.Tensor, coreset_ratio: float = 0.1, seed: int = 0,
            projection_dim: int | None = 128, tags: torch.Tensor | None = None, store=None,
            bank_size: int | None = None, method: str = "greedy") -> "MemoryBank":
        """Keep a coreset of `patches` (on their device): `bank_size` members, or `coreset_ratio` of them, chosen by
        `method` (hdmap/models/coreset.py); `tags` (one int per patch) follow the chosen members. `store` (a
        CoresetStore) caches the greedy order between fits of the same patches."""
        if patches.shape[0] == 0:
            raise EmptyBankError("no reference patches to build a memory bank from")
        chosen = greedy_coreset(patches, coreset_ratio, seed, projection_dim, store, bank_size, method)
        return self.keep(patches[chosen], tags.to(patches.device)[chosen] if tags is not None else None)

    def keep(self, members: torch.Tensor, tags: torch.Tensor | None = None) -> "MemoryBank":
        """Make `members` (M, D) the bank; `tags` (one int per member) or -1 each."""
        self.features = members.detach().float().contiguous()
        self.member_tags = (tags.clone() if tags is not None
                            else torch.full((len(members),), -1, device=members.device))
        self._members_changed()
        return self

    def patch_distances(self, patches: torch.Tensor) -> torch.Tensor:
        """Distance of each query patch to its nearest bank member, (Q,)."""
        return self.index().search(patches, 1)[0][:, 0]

    def image_scores(self, patches: torch.Tensor, n_images: int, reweight_k: int = 1, image_score: str = "max",
                     top_fraction: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
        """(image scores (B,), patch distances (B, P)) for B images of P patches each.

        `max`: the largest patch distance, re-weighted as in the PatchCore paper when reweight_k > 1.
        `top`: mean of the top `top_fraction` patch distances (AnomalyDINO)."""
        patches = patches.to(self.features.device)
        distances, nearest = self.index().search(patches, 1)
        patch_scores = distances[:, 0].view(n_images, -1)
        if image_score == "top":
            count = max(1, int(round(top_fraction * patch_scores.shape[1])))
            return patch_scores.topk(count, dim=1).values.mean(dim=1), patch_scores
        if image_score != "max":
            raise ValueError(f"image_score must be 'max' or 'top', got {image_score!r}")
        worst = patch_scores.argmax(dim=1)
        scores = patch_scores.gather(1, worst[:, None])[:, 0]
        if reweight_k > 1:
            rows = torch.arange(n_images, device=patches.device) * patch_scores.shape[1] + worst
            scores = scores * self._reweight(patches[rows], nearest[rows, 0], reweight_k)
        return scores, patch_scores

    def _reweight(self, worst_patches: torch.Tensor, nearest_member: torch.Tensor, k: int) -> torch.Tensor:
        """PatchCore eq. 7: w = 1 - exp(||m_test - m*||) / sum over N_k(m*) of exp(||m_test - m||)."""
        _, neighbourhood = self.index().search(self.features[nearest_member], k)  # includes m* itself
        members = self.features[neighbourhood]  # (B, k, D)
        distances = torch.linalg.vector_norm(members - worst_patches[:, None, :], dim=2)
        nearest = torch.linalg.vector_norm(self.features[nearest_member] - worst_patches, dim=1)
        return 1.0 - torch.exp(nearest - torch.logsumexp(distances, dim=1))  # overflow-safe form
