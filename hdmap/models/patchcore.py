"""Torch core of (gated) PatchCore: gate, one or two memory banks, calibration, scoring. No Lightning here.

Inputs are tap grids (from the feature cache or a backbone) and the raw maps (for intensity gates).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hdmap.data.splits import select_references
from hdmap.gating.gates import COLD, WARM, Gate, GateConfig
from hdmap.models.embedding import flatten_patches, patch_embedding
from hdmap.models.memory_bank import MemoryBank

BANK_MODES = ("mixed", "gated", "soft")
CONDITION_NAMES = ("cold", "warm")


@dataclass
class PatchCoreConfig:
    """Settings of the scoring model (backbone settings live with the features)."""

    bank_mode: str = "mixed"  # mixed | gated | soft
    shots: int | None = 16  # references per condition (2 x shots in all); None = all of train
    reference_sampling: str = "per_condition"  # per_condition (k per gate-assigned condition) | uniform (2k)
    local_pool: int = 3
    pool_include_pad: bool = True  # local average counts zero padding (PatchCore reference behaviour)
    context_ks: tuple[int, ...] = (0,)  # horizontal-context k values; (0,) = off
    coreset_ratio: float = 0.1
    projection_dim: int | None = 128
    reweight_k: int = 9  # PatchCore neighbourhood re-weighting; 1 = off
    distance: str = "l2"  # l2 | cosine (L2 on unit vectors)
    image_score: str = "max"  # max | top
    top_fraction: float = 0.01
    soft_combine: str = "min"  # min of z-scores | posterior (gate-weighted z-scores)
    calibration_maps: int = 16  # held-out train normals per condition for soft-mode z-scores
    seed: int = 0
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self):
        if isinstance(self.gate, dict):
            self.gate = GateConfig(**self.gate)
        self.context_ks = tuple(self.context_ks) if not isinstance(self.context_ks, int) else (self.context_ks,)
        checks = {"bank_mode": BANK_MODES, "reference_sampling": ("per_condition", "uniform"),
                  "distance": ("l2", "cosine"), "image_score": ("max", "top"), "soft_combine": ("min", "posterior")}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.shots is not None and self.shots < 1:
            raise ValueError(f"shots must be >= 1 or None (all of train), got {self.shots}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["context_ks"] = list(self.context_ks)
        return out


def _as_tensor(array) -> torch.Tensor:
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(np.array(array))  # copy: memmaps are read-only


def _select(grids: list, indices) -> list[torch.Tensor]:
    indices = np.asarray(indices, dtype=np.int64)
    return [_as_tensor(g[indices]) for g in grids]


class GatedPatchCoreModel(nn.Module):
    """Memory banks (one mixed, or cold + warm) chosen per map by a gate; everything needed to score is state."""

    def __init__(self, config: PatchCoreConfig | None = None):
        super().__init__()
        self.config = config or PatchCoreConfig()
        self.gate = Gate(self.config.gate)
        names = ("mixed",) if self.config.bank_mode == "mixed" else CONDITION_NAMES
        self.banks = nn.ModuleDict({name: MemoryBank() for name in names})
        self.register_buffer("calibration", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))  # (bank, [mean, std])
        self.notes: list[str] = []  # what the fit had to decide (fallbacks), for the report
        self.train_assignment: torch.Tensor | None = None

    # --- features -------------------------------------------------------------------------------------------
    def embed(self, grids: list[torch.Tensor]) -> torch.Tensor:
        embedding = patch_embedding([_as_tensor(g).float() for g in grids], self.config.local_pool,
                                    self.config.context_ks, self.config.pool_include_pad)
        if self.config.distance == "cosine":
            embedding = F.normalize(embedding, dim=1)
        return embedding

    def global_features(self, grids: list, batch: int = 64) -> torch.Tensor | None:
        """Mean patch embedding per map (without context), for feature gates; None when the gate needs none."""
        if not self.gate.uses_features:
            return None
        out = []
        for start in range(0, len(grids[0]), batch):
            chunk = [_as_tensor(g[start:start + batch]).float() for g in grids]
            out.append(patch_embedding(chunk, self.config.local_pool, (0,), self.config.pool_include_pad).mean(dim=(2, 3)))
        return torch.cat(out)

    # --- fitting --------------------------------------------------------------------------------------------
    def choose_references(self, assignment: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(reference indices, their condition codes) from the train assignment."""
        cfg = self.config
        names = np.array(CONDITION_NAMES)[assignment.numpy()]
        per_condition = names if cfg.reference_sampling == "per_condition" else None
        picked = select_references(len(names), cfg.shots, cfg.seed, per_condition, CONDITION_NAMES)
        return picked, assignment.numpy()[picked]

    def fit(self, train_grids: list, train_maps, train_truth: list[str] | None = None) -> "GatedPatchCoreModel":
        """Assign train conditions with the gate, sample references, build banks (and soft calibration)."""
        cfg = self.config
        train_maps = _as_tensor(train_maps).float()
        self.notes = []
        assignment = self.gate.assign_train(train_maps, self.global_features(train_grids), train_truth)
        self.train_assignment = assignment
        counts = {n: int((assignment == c).sum()) for c, n in enumerate(CONDITION_NAMES)}
        one_sided = min(counts.values()) == 0
        if one_sided and cfg.bank_mode == "gated":
            raise ValueError(f"gate '{cfg.gate.kind}' assigned every train map to one condition ({counts}); "
                             f"a gated bank needs both. Use bank_mode=mixed or another gate.")
        elif one_sided and (cfg.bank_mode == "soft" or cfg.reference_sampling == "per_condition"):
            warnings.warn(f"gate assigned every train map to one condition ({counts}); "
                          f"falling back to uniform sampling and one mixed bank")
            self.notes.append(f"gate assigned all train maps to one condition {counts}: fell back to a mixed bank")
            cfg.reference_sampling = "uniform"
            if cfg.bank_mode == "soft":
                cfg.bank_mode = "mixed"
                self.banks = nn.ModuleDict({"mixed": MemoryBank()})
        references, codes = self.choose_references(assignment)
        ref_embedding = self.embed(_select(train_grids, references))
        if cfg.bank_mode == "mixed":
            per_map = ref_embedding.shape[2] * ref_embedding.shape[3]
            tags = torch.from_numpy(np.repeat(codes, per_map)).long()  # condition of the reference of each patch
            self.banks["mixed"].fit(flatten_patches(ref_embedding), cfg.coreset_ratio, cfg.seed, cfg.projection_dim,
                                    tags=tags)
        else:
            for code, name in enumerate(CONDITION_NAMES):
                members = ref_embedding[torch.from_numpy(codes == code)]
                if len(members) == 0:
                    raise ValueError(f"no references for the {name} bank (reference counts: "
                                     f"cold {int((codes == COLD).sum())}, warm {int((codes == WARM).sum())})")
                self.banks[name].fit(flatten_patches(members), cfg.coreset_ratio, cfg.seed, cfg.projection_dim)
        if cfg.bank_mode == "soft":
            self._calibrate(train_grids, assignment, set(references.tolist()))
        return self

    def _calibrate(self, train_grids, assignment, used: set[int]) -> None:
        """z-score statistics of each bank on held-out train normals of its condition."""
        for code, name in enumerate(CONDITION_NAMES):
            held_out = [i for i in np.flatnonzero(assignment.numpy() == code) if i not in used]
            held_out = held_out[:self.config.calibration_maps]
            if len(held_out) < 2:
                raise ValueError(f"soft mode needs >= 2 held-out train maps of condition '{name}' for calibration, "
                                 f"found {len(held_out)}; lower shots or use bank_mode=gated")
            scores = self._bank_scores(name, self.embed(_select(train_grids, held_out)))[0]
            self.calibration[code] = torch.stack([scores.mean(), scores.std().clamp_min(1e-6)])

    # --- scoring --------------------------------------------------------------------------------------------
    def _bank_scores(self, name: str, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        scores, patches = self.banks[name].image_scores(flatten_patches(embedding), embedding.shape[0],
                                                        cfg.reweight_k, cfg.image_score, cfg.top_fraction)
        return scores, patches.view(embedding.shape[0], *embedding.shape[2:])

    @torch.no_grad()
    def score(self, grids: list, maps, known: list[str] | None = None, batch: int = 64,
              upsample: bool = False) -> dict:
        """{'scores' (N,), 'patch_maps' (N, h, w), 'route' (N,) 0 cold / 1 warm, 'p_warm' (N,)}, plus
        'anomaly_maps' (N, H, W) at the maps' own size when `upsample`."""
        if any(len(bank) == 0 for bank in self.banks.values()):
            raise RuntimeError("the memory bank is empty: call fit() (or load a fitted checkpoint) before scoring")
        maps = _as_tensor(maps).float()
        route, p_warm = self.gate.route(maps, self.global_features(grids), known)
        outputs = {"scores": [], "patch_maps": []}
        for start in range(0, len(maps), batch):
            part = slice(start, start + batch)
            embedding = self.embed([_as_tensor(g[part]) for g in grids])
            scores, patch_maps = self._combine(embedding, route[part], p_warm[part])
            outputs["scores"].append(scores)
            outputs["patch_maps"].append(patch_maps)
        result = {"scores": torch.cat(outputs["scores"]), "patch_maps": torch.cat(outputs["patch_maps"]),
                  "route": route, "p_warm": p_warm.float()}
        if upsample:
            result["anomaly_maps"] = F.interpolate(result["patch_maps"][:, None], size=maps.shape[-2:],
                                                   mode="bilinear", align_corners=False)[:, 0]
        return result

    def _combine(self, embedding, route, p_warm):
        mode = self.config.bank_mode
        if mode == "mixed":
            return self._bank_scores("mixed", embedding)
        per_bank = [self._bank_scores(name, embedding) for name in CONDITION_NAMES]
        if mode == "gated":
            pick = route.bool()
            scores = torch.where(pick, per_bank[WARM][0], per_bank[COLD][0])
            patch_maps = torch.where(pick[:, None, None], per_bank[WARM][1], per_bank[COLD][1])
            return scores, patch_maps
        z = [(s - self.calibration[c, 0]) / self.calibration[c, 1] for c, (s, _) in enumerate(per_bank)]
        zmaps = [(m - self.calibration[c, 0]) / self.calibration[c, 1] for c, (_, m) in enumerate(per_bank)]
        if self.config.soft_combine == "min":
            return torch.minimum(z[COLD], z[WARM]), torch.minimum(zmaps[COLD], zmaps[WARM])
        w = p_warm.float()
        return (1 - w) * z[COLD] + w * z[WARM], (1 - w)[:, None, None] * zmaps[COLD] + w[:, None, None] * zmaps[WARM]
