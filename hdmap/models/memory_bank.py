"""Memory bank of normal patch features: greedy k-center coreset, exact faiss kNN, PatchCore scoring."""
from __future__ import annotations

import faiss
import numpy as np
import torch

from hdmap.nn_state import ResizableBuffers


class EmptyBankError(RuntimeError):
    """Scoring against a bank that holds no features."""


def greedy_coreset(features: torch.Tensor, ratio: float, seed: int = 0, projection_dim: int | None = 128) -> torch.Tensor:
    """Indices of a greedy k-center coreset with round(ratio * N) members (at least 1).

    Distances are measured on a seeded random projection to `projection_dim` (None: full dimension)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset ratio must lie in (0, 1], got {ratio}")
    n = features.shape[0]
    size = max(1, int(round(ratio * n)))
    if size >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    x = features.float()
    if projection_dim and projection_dim < x.shape[1]:
        projection = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim ** 0.5
        x = x @ projection.to(x.device)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = torch.randint(n, (1,), generator=generator).item()
    nearest = torch.linalg.vector_norm(x - x[chosen[0]], dim=1)
    for i in range(1, size):
        chosen[i] = torch.argmax(nearest)
        nearest = torch.minimum(nearest, torch.linalg.vector_norm(x - x[chosen[i]], dim=1))
    return chosen


def _use_gpu_faiss(device: torch.device) -> bool:
    return device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def knn(bank: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact L2 k nearest neighbours with faiss (GPU index when available): (distances, indices), (Q, k)."""
    if bank.shape[0] == 0:
        raise EmptyBankError("the memory bank is empty: fit the model on reference maps before scoring")
    k = min(k, bank.shape[0])
    index = faiss.IndexFlatL2(bank.shape[1])
    if _use_gpu_faiss(bank.device):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), bank.device.index or 0, index)
    index.add(np.ascontiguousarray(bank.detach().float().cpu().numpy()))
    squared, indices = index.search(np.ascontiguousarray(queries.detach().float().cpu().numpy()), k)
    distances = torch.from_numpy(np.sqrt(np.maximum(squared, 0.0))).to(queries.device)
    return distances, torch.from_numpy(indices).to(queries.device)


class MemoryBank(ResizableBuffers):
    """Normal patch features as a buffer, so a checkpoint carries them."""

    def __init__(self, dim: int = 0):
        super().__init__()
        self.register_buffer("features", torch.zeros(0, dim))
        self.register_buffer("member_tags", torch.zeros(0, dtype=torch.long))  # e.g. condition of each member

    def __len__(self) -> int:
        return self.features.shape[0]

    def fit(self, patches: torch.Tensor, coreset_ratio: float = 0.1, seed: int = 0,
            projection_dim: int | None = 128, tags: torch.Tensor | None = None) -> "MemoryBank":
        """Keep a coreset of `patches`; `tags` (one int per patch) follow the chosen members."""
        if patches.shape[0] == 0:
            raise EmptyBankError("no reference patches to build a memory bank from")
        chosen = greedy_coreset(patches, coreset_ratio, seed, projection_dim).to(patches.device)
        self.features = patches[chosen].detach().clone().float()
        self.member_tags = tags[chosen].clone() if tags is not None else torch.full((len(chosen),), -1)
        return self

    def patch_distances(self, patches: torch.Tensor) -> torch.Tensor:
        """Distance of each query patch to its nearest bank member, (Q,)."""
        return knn(self.features, patches, 1)[0][:, 0]

    def image_scores(self, patches: torch.Tensor, n_images: int, reweight_k: int = 1, image_score: str = "max",
                     top_fraction: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
        """(image scores (B,), patch distances (B, P)) for B images of P patches each.

        `max`: the largest patch distance, re-weighted as in the PatchCore paper when reweight_k > 1.
        `top`: mean of the top `top_fraction` patch distances (AnomalyDINO)."""
        distances, nearest = knn(self.features, patches, 1)
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
        _, neighbourhood = knn(self.features, self.features[nearest_member], k)  # includes m* itself
        members = self.features[neighbourhood]  # (B, k, D)
        distances = torch.linalg.vector_norm(members - worst_patches[:, None, :], dim=2)
        nearest = torch.linalg.vector_norm(self.features[nearest_member] - worst_patches, dim=1)
        return 1.0 - torch.exp(nearest - torch.logsumexp(distances, dim=1))  # overflow-safe form
