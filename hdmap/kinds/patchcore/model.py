"""Torch core of (gated) PatchCore: gate, one or two memory banks, calibration, scoring. No Lightning here.

Inputs are tap grids (from the feature cache or a backbone) and the raw maps (for intensity gates).
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hdmap.condition_names import COLD, CONDITIONS, WARM
from hdmap.data.condition_statistics import ConditionStatistics
from hdmap.data.splits import select_references
from hdmap.evaluation.metrics import auroc
from hdmap.features.npy_stream import release_pages
from hdmap.gating.gates import build_gate
from hdmap.models.band import BandModel
from hdmap.models.bank_stream import BankStream
from hdmap.models.embedding import flatten_patches, patch_embedding
from hdmap.models.memory_bank import MemoryBank
from hdmap.kinds.patchcore.settings import AUTO_CHOICES, FitPlan, PatchCoreSettings, fit_condition_stats
from hdmap.statistics import held_out_projection, is_bimodal


MIN_FUSION_MAPS = 4  # held-out train maps fusion needs at least, for a mean and a standard deviation
# Fewer held-out maps than this get a note: a standard deviation from n maps is off by ~1/sqrt(2(n - 1)) (18 % at 16,
# 13 % at 32, the default: a z of 3 then lies within about +-0.4), and both z's of fusion rest on it.
FUSION_MAPS_NOTE = 16


def _as_tensor(array) -> torch.Tensor:
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(np.array(array))  # copy: memmaps are read-only


def _select(grids: list, indices) -> list[torch.Tensor]:
    indices = np.asarray(indices, dtype=np.int64)
    return [_as_tensor(g[indices]) for g in grids]


class PatchCoreModel(nn.Module):
    """Memory banks (one mixed, or cold + warm) chosen per map by a gate; everything needed to score is state."""

    def __init__(self, config: PatchCoreSettings | None = None):
        super().__init__()
        self.settings = config or PatchCoreSettings()  # as asked; never changed by a fit
        self.fallback: str | None = None  # what a fit decided instead: "mixed" (one mixed bank, uniform references)
        self.config = self.settings  # what runs: the settings with the fit's decision applied
        self.gate = build_gate(self.config.gate)
        names = ("mixed",) if self.config.bank_mode == "mixed" else CONDITIONS
        self.banks = nn.ModuleDict({name: MemoryBank() for name in names})
        self.register_buffer("calibration", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))  # (bank, [mean, std])
        self.band = BandModel(self.config.band)  # fusion's second score (fitted only when fused)
        # (PatchCore, band) x [mean, std] of the image scores on held-out train normals, for fusion
        self.register_buffer("fusion_calibration", torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64))
        self.register_buffer("fusion_choice", torch.tensor(0))  # fusion=auto: the index of its choice (AUTO_CHOICES)
        cfg = self.config
        self.condition_stats = ConditionStatistics(cfg.input_norm, cfg.norm_percentile, cfg.gate.percentile,
                                                   cfg.band_window)
        self.notes: list[str] = []  # what the fit had to decide (fallbacks), for the report
        self.coreset_store = None  # a CoresetStore: greedy orders reused between fits (Tune trials)
        self.train_assignment: torch.Tensor | None = None

    # --- features -------------------------------------------------------------------------------------------
    def embed(self, grids: list[torch.Tensor], maps: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D, h, w) patch embedding of tap grids; with `band_weight` > 0 the band-descriptor channel of
        the raw `maps` is appended (after cosine normalisation, so its weight keeps its meaning)."""
        embedding = patch_embedding([_as_tensor(g).float() for g in grids], self.config.local_pool,
                                    self.config.context_ks, self.config.pool_include_pad)
        if self.config.distance == "cosine":
            embedding = F.normalize(embedding, dim=1)
        if self.config.band_weight > 0:
            if maps is None:
                raise ValueError("band_weight > 0: embed() needs the raw maps for the band descriptor")
            band = self.condition_stats.band_channel(_as_tensor(maps).to(embedding.device), embedding.shape[-2:])
            embedding = torch.cat([embedding, self.config.band_weight * band.to(embedding.dtype)], dim=1)
        return embedding

    def global_features(self, grids: list, batch: int = 64) -> torch.Tensor | None:
        """Mean patch embedding per map (without context), for feature gates; None when the gate needs none."""
        if not self.gate.uses_features:
            return None
        out = []
        for start in range(0, len(grids[0]), batch):
            chunk = [_as_tensor(g[start:start + batch]).float() for g in grids]
            out.append(patch_embedding(chunk, self.config.local_pool, (0,), self.config.pool_include_pad).mean(dim=(2, 3)))
            for grid in grids:
                release_pages(grid)
        return torch.cat(out)

    # --- fitting --------------------------------------------------------------------------------------------
    def choose_references(self, assignment: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(reference indices, their condition codes) from the train assignment."""
        cfg = self.config
        names = np.array(CONDITIONS)[assignment.numpy()]
        per_condition = names if cfg.reference_sampling == "per_condition" else None
        try:
            picked = select_references(len(names), cfg.shots, cfg.seed, per_condition, CONDITIONS)
        except ValueError as error:  # name the setting and the most this data can hold
            most = (min(int((names == c).sum()) for c in CONDITIONS) if per_condition is not None
                    else len(names) // 2)
            raise ValueError(f"model.shots={cfg.shots} is more than this data holds (at most {most} "
                             f"{'per condition' if per_condition is not None else 'per half of train'}): "
                             f"{error}") from error
        return picked, assignment.numpy()[picked]

    def plan_fit(self, train_maps, condition_stats: ConditionStatistics | None = None,
                 train_global_features: torch.Tensor | None = None, train_truth: list[str] | None = None) -> FitPlan:
        """Take the condition statistics fitted on train (`fit_condition_stats`), fit the gate on all train maps,
        then choose the references (and soft-mode calibration maps)."""
        self.apply_fallback(None)  # a new fit decides afresh
        cfg = self.config
        train_maps = _as_tensor(train_maps).float()
        self.notes = []
        if cfg.condition_statistics() is not None:
            if condition_stats is None or not condition_stats.fitted:
                raise ValueError("these settings normalise inputs or add the band descriptor: plan_fit needs the "
                                 "condition statistics fitted on train (fit_condition_stats)")
            self.condition_stats = condition_stats
            self.notes += condition_stats.notes
        assignment = self.gate.assign_train(train_maps, train_global_features, train_truth).cpu()
        if cfg.gate.kind == "oracle" and self.gate.train_source != "known conditions":
            self.notes.append(f"oracle gate: {self.gate.train_source}")
        self.train_assignment = assignment
        counts = {n: int((assignment == c).sum()) for c, n in enumerate(CONDITIONS)}
        one_sided = min(counts.values()) == 0
        if one_sided and cfg.bank_mode == "gated" and not cfg.gate_fallback:
            raise ValueError(f"gate '{cfg.gate.kind}' assigned every train map to one condition ({counts}); "
                             f"a gated bank needs both. Use bank_mode=mixed or another gate.")
        bimodal, why = self.gate_separation(train_maps, train_global_features, assignment)
        gate_used = cfg.bank_mode != "mixed" or cfg.reference_sampling == "per_condition"
        if gate_used and cfg.gate_fallback and not (bimodal and not one_sided):
            self.notes.append(f"gate '{cfg.gate.kind}' did not split train into two clear conditions ({why}; "
                              f"counts {counts}): fell back to one mixed bank with uniform references")
            self.apply_fallback("mixed")
        elif one_sided and (cfg.bank_mode == "soft" or cfg.reference_sampling == "per_condition"):
            warnings.warn(f"gate assigned every train map to one condition ({counts}); "
                          f"falling back to uniform sampling and one mixed bank")
            self.notes.append(f"gate assigned all train maps to one condition {counts}: fell back to a mixed bank")
            self.apply_fallback("mixed")
        cfg = self.config  # with the fallback, if any
        references, codes = self.choose_references(assignment)
        calibration = np.zeros(0, dtype=np.int64)
        if cfg.bank_mode == "soft" and cfg.shots is None:  # all of train: every map but the calibration maps
            calibration = self._calibration_maps(assignment.numpy(), set())
            keep = ~np.isin(references, calibration)
            references, codes = references[keep], codes[keep]
        elif cfg.bank_mode == "soft":
            calibration = self._calibration_maps(assignment.numpy(), set(references.tolist()))
        if cfg.fused:
            references, codes, calibration = self._plan_fusion(train_maps, train_truth, references, codes,
                                                               calibration)
        return FitPlan(references, codes, calibration, assignment.numpy()[calibration])

    def _plan_fusion(self, train_maps: torch.Tensor, train_truth, references, codes, calibration):
        """Held-out train normals for fusion's standardisation: soft mode's calibration maps when it has them, else
        2 x calibration_maps drawn at random outside the references (from an all-of-train bank: at most a quarter
        of train, taken out of the bank). The band detector is fitted on every other train map."""
        cfg = self.config
        if not len(calibration):
            everything = np.arange(len(train_maps))
            pool = everything if cfg.shots is None else np.setdiff1d(everything, references)
            wanted = min(2 * cfg.calibration_maps, len(pool) // 4 if cfg.shots is None else len(pool))
            if wanted < MIN_FUSION_MAPS:
                raise ValueError(f"model.fusion={cfg.fusion} standardises the two scores on held-out train maps "
                                 f"(2 x model.calibration_maps = {2 * cfg.calibration_maps}), but only "
                                 f"{len(pool)} train maps lie outside the references: lower model.shots, or use "
                                 f"model.fusion=none")
            calibration = np.sort(np.random.default_rng(cfg.seed).choice(pool, wanted, replace=False))
            keep = ~np.isin(references, calibration)
            references, codes = references[keep], codes[keep]
        others = np.setdiff1d(np.arange(len(train_maps)), calibration)
        self.band.fit(train_maps.cpu(), train_truth, rows=others)  # copies only the maps it reads
        self.notes += self.band.notes
        self.notes.append(f"fusion {cfg.fusion}" + (f" (band weight {cfg.fusion_weight})" if cfg.fusion == "sum"
                                                    else "") +
                          f": PatchCore and band scores standardised on {len(calibration)} held-out train normals; "
                          f"the band detector fitted on the other {len(others)} train maps")
        if len(calibration) < FUSION_MAPS_NOTE:
            self.notes.append(f"fusion: only {len(calibration)} held-out train normals standardise the two scores "
                              f"(their standard deviations are uncertain by ~"
                              f"{100 / np.sqrt(2 * (len(calibration) - 1)):.0f} %); {FUSION_MAPS_NOTE} or more "
                              f"need {4 * FUSION_MAPS_NOTE} train maps")
        return references, codes, calibration

    def gate_separation(self, train_maps: torch.Tensor, train_global_features: torch.Tensor | None,
                        assignment: torch.Tensor) -> tuple[bool, str]:
        """Is the gate's train split clearly bimodal? Known conditions always are; intensity gates are judged on
        the intensity percentile they route by, feature gates on half of the maps projected onto the line between
        the two groups' means fitted on the other half (Ashman's D > 2, smaller group >= 5 %)."""
        if self.gate.uses_features and train_global_features is not None and \
                self.gate.train_source != "known conditions":
            held_out = held_out_projection(train_global_features, assignment, self.config.seed)
            if held_out is None:
                return False, "one half of train holds a single condition"
            return is_bimodal(*held_out)
        return self.gate.intensity_split_is_clear(train_maps, assignment)

    def apply_fallback(self, fallback: str | None) -> None:
        """Run as the settings say (None), or with one mixed bank of uniformly drawn references ("mixed"): a fit's
        decision, kept beside the settings (a checkpoint records both), never written into them."""
        if fallback not in (None, "mixed"):
            raise ValueError(f"unknown fallback {fallback!r}")
        self.fallback = fallback
        self.config = (self.settings if fallback is None
                       else replace(self.settings, bank_mode="mixed", reference_sampling="uniform"))
        names = ("mixed",) if self.config.bank_mode == "mixed" else CONDITIONS
        if tuple(self.banks) != names:
            self.banks = nn.ModuleDict({name: MemoryBank() for name in names})

    def _calibration_maps(self, assignment: np.ndarray, used: set[int]) -> np.ndarray:
        """Held-out train normals of each condition (not references) for the soft-mode z-scores."""
        picked = []
        for code, name in enumerate(CONDITIONS):
            held_out = [i for i in np.flatnonzero(assignment == code) if i not in used]
            held_out = held_out[:self.config.calibration_maps]
            if len(held_out) < 2:
                raise ValueError(f"soft mode needs >= 2 held-out train maps of condition '{name}' for calibration, "
                                 f"found {len(held_out)}; lower shots or use bank_mode=gated")
            picked += held_out
        return np.asarray(picked, dtype=np.int64)

    def bank_streams(self, codes, per_map: int, like: torch.Tensor) -> dict[str, tuple[BankStream, np.ndarray]]:
        """{bank: (a BankStream for its patches, its references' positions among `codes`)}: one mixed bank of every
        reference, or a bank per condition of its references. `like`: a tensor of the patches' width, dtype and
        device."""
        cfg = self.config
        codes = np.asarray(codes)
        fit = {"coreset_ratio": cfg.coreset_ratio, "seed": cfg.seed, "projection_dim": cfg.projection_dim,
               "store": self.coreset_store, "bank_size": cfg.bank_size, "method": cfg.coreset_method}
        window = max(1, int(cfg.fit_window_mb * 2 ** 20) // (like.shape[-1] * like.element_size()))
        if cfg.bank_mode == "mixed":
            members = np.arange(len(codes))
            return {"mixed": (BankStream(len(members) * per_map, like, fit, window, tagged=True), members)}
        streams = {}
        for code, name in enumerate(CONDITIONS):
            members = np.flatnonzero(codes == code)
            if len(members) == 0:
                raise ValueError(f"no references for the {name} bank (reference counts: "
                                 f"cold {int((codes == COLD).sum())}, warm {int((codes == WARM).sum())})")
            streams[name] = (BankStream(len(members) * per_map, like, fit, window), members)
        return streams

    def finish_banks(self, streams: dict[str, BankStream]) -> None:
        for name, stream in streams.items():
            stream.finish(self.banks[name])

    def build_banks(self, reference_patches: torch.Tensor, codes) -> None:
        """Memory banks from the references' channels-last embeddings (R, h, w, D), on their device (the fit
        epoch streams them instead: FitEmbeddings)."""
        codes = np.asarray(codes)
        per_map, dim = reference_patches.shape[1] * reference_patches.shape[2], reference_patches.shape[-1]
        streams = self.bank_streams(codes, per_map, reference_patches.new_empty((0, dim)))
        for stream, members in streams.values():
            rows = reference_patches[torch.as_tensor(members, device=reference_patches.device)]
            tags = torch.as_tensor(codes[members], device=rows.device).long().repeat_interleave(per_map)
            stream.add(rows.reshape(-1, dim), tags)
        self.finish_banks({name: stream for name, (stream, _) in streams.items()})

    def calibrate(self, calibration_embedding: torch.Tensor, codes) -> None:
        """z-score statistics (mean, std) of each bank's image scores on held-out train normals of its condition."""
        codes = torch.as_tensor(np.asarray(codes), device=calibration_embedding.device).long()
        values = []
        for code, name in enumerate(CONDITIONS):
            scores = self._bank_scores(name, calibration_embedding[codes == code])[0]
            values.append(torch.stack([scores.mean(), scores.std().clamp_min(1e-6)]))
        self.calibration = torch.stack(values).to(self.calibration)

    @torch.no_grad()
    def calibrate_fusion(self, calibration_embedding: torch.Tensor, maps: torch.Tensor, codes) -> None:
        """Mean and std of PatchCore's image score and of the band score on the held-out train normals; each map
        goes to the bank of its train assignment, with the gate's own probability of warm (a gate on features: its
        assignment), and the band detector's gate is told that assignment (an oracle band gate needs it)."""
        route = torch.as_tensor(np.asarray(codes), device=calibration_embedding.device).long()
        known = [CONDITIONS[int(code)] for code in route.tolist()]  # their train assignment (an oracle's truth)
        p_warm = route.double()
        if not self.gate.uses_features:  # the gate's own posterior, as test maps get it (soft combine)
            p_warm = self.gate.route(maps.float(), None, known)[1].double().to(route.device)
        patchcore = self._combine(calibration_embedding, route, p_warm)[0].double()
        band = self.band.score(maps, known)["scores"].to(patchcore.device)
        self.fusion_calibration = torch.stack([torch.stack([v.mean(), v.std().clamp_min(1e-9)])
                                               for v in (patchcore, band)]).to(self.fusion_calibration)

    def fit(self, train_grids: list, train_maps, train_truth: list[str] | None = None) -> "PatchCoreModel":
        """All of fitting in one call (tests, notebooks): plan, embed the chosen maps, banks, calibration."""
        plan = self.plan_fit(train_maps, fit_condition_stats(self.config, train_maps),
                             self.global_features(train_grids), train_truth)
        maps = _as_tensor(train_maps)
        embedding = self.embed(_select(train_grids, plan.references), maps[plan.references])
        self.build_banks(embedding.permute(0, 2, 3, 1), plan.reference_codes)
        if len(plan.calibration):
            embedding = self.embed(_select(train_grids, plan.calibration), maps[plan.calibration])
            if self.config.bank_mode == "soft":
                self.calibrate(embedding, plan.calibration_codes)
            if self.config.fused:
                self.calibrate_fusion(embedding, maps[plan.calibration], plan.calibration_codes)
        return self

    # --- scoring --------------------------------------------------------------------------------------------
    def _bank_scores(self, name: str, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        scores, patches = self.banks[name].image_scores(flatten_patches(embedding), embedding.shape[0],
                                                        cfg.reweight_k, cfg.image_score, cfg.top_fraction)
        return scores, patches.view(embedding.shape[0], *embedding.shape[2:])

    @torch.no_grad()
    def score(self, grids: list, maps, known: list[str] | None = None, batch: int = 64) -> dict:
        """{'scores' (N,), 'patch_maps' (N, h, w), 'route' (N,) 0 cold / 1 warm, 'p_warm' (N,)}; every map is
        scored on its own."""
        parts = [self.score_batch([_as_tensor(g[i:i + batch]) for g in grids], _as_tensor(maps[i:i + batch]),
                                  None if known is None else known[i:i + batch])
                 for i in range(0, len(maps), batch)]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    @torch.no_grad()
    def score_batch(self, grids: list[torch.Tensor], maps: torch.Tensor, known: list[str] | None = None) -> dict:
        """Scores of one batch, on the device of the banks (see `score`)."""
        if any(len(bank) == 0 for bank in self.banks.values()):
            raise RuntimeError("the memory bank is empty: call fit() (or load a fitted checkpoint) before scoring")
        device = self.calibration.device
        grids = [g.to(device) for g in grids]
        maps = maps.to(device).float()
        route, p_warm = self.gate.route(maps, self.global_features(grids), known)
        scores, patch_maps = self._combine(self.embed(grids, maps), route, p_warm)
        out = {"route": route, "p_warm": p_warm.float()}
        if self.config.fused:
            band = self.band.score(maps, known)
            parts = self.fusion_parts(scores, band["scores"].to(device))
            scores = self.fuse(parts)
            out["fusion_parts"] = parts  # (N, 2): PatchCore's z and the band z, for fusion=auto's choice
            if "band_rows" in band:
                out["band_rows"] = band["band_rows"]  # where the band detector sees a band (hdmap/run/location.py)
        return {"scores": scores, "patch_maps": patch_maps, **out}

    def fusion_parts(self, patchcore: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """(N, 2) PatchCore's and the band detector's image scores, standardised on held-out train normals."""
        (pc_mean, pc_std), (band_mean, band_std) = self.fusion_calibration
        return torch.stack([(patchcore.double() - pc_mean) / pc_std, (band.double() - band_mean) / band_std], dim=1)

    def fuse(self, parts: torch.Tensor, fusion: str | None = None) -> torch.Tensor:
        """The fused image score of (N, 2) standardised parts: by `fusion`, else by the settings (auto: by the
        choice its fit made, `fusion_choice`)."""
        fusion = fusion or self.config.fusion
        if fusion == "auto":
            fusion = AUTO_CHOICES[int(self.fusion_choice)]
        z_patchcore, z_band = parts[:, 0], parts[:, 1]
        if fusion == "max":
            return torch.maximum(z_patchcore, z_band)
        if fusion == "patchcore":
            return z_patchcore.clone()
        if fusion == "band":
            return z_band.clone()
        weight = self.config.fusion_weight
        return (1 - weight) * z_patchcore + weight * z_band

    def choose_fusion(self, parts: torch.Tensor, labels: np.ndarray) -> dict:
        """fusion=auto: keep whichever of AUTO_CHOICES has the best AUROC of (tune) maps' `parts` and `labels` (the
        first on a tie); returns each choice's AUROC."""
        aurocs = {name: auroc(self.fuse(parts, name).numpy(), labels) for name in AUTO_CHOICES}
        best = max(AUTO_CHOICES, key=lambda name: (aurocs[name], -AUTO_CHOICES.index(name)))
        self.fusion_choice.fill_(AUTO_CHOICES.index(best))
        return aurocs

    def _combine(self, embedding, route, p_warm):
        mode = self.config.bank_mode
        if mode == "mixed":
            return self._bank_scores("mixed", embedding)
        if mode == "gated":  # each map is searched in its routed bank only
            scores = embedding.new_zeros(embedding.shape[0])
            patch_maps = embedding.new_zeros(embedding.shape[0], *embedding.shape[2:])
            for code, name in enumerate(CONDITIONS):
                members = route == code
                if members.any():
                    scores[members], patch_maps[members] = self._bank_scores(name, embedding[members])
            return scores, patch_maps
        per_bank = [self._bank_scores(name, embedding) for name in CONDITIONS]
        z = [(s - self.calibration[c, 0]) / self.calibration[c, 1] for c, (s, _) in enumerate(per_bank)]
        zmaps = [(m - self.calibration[c, 0]) / self.calibration[c, 1] for c, (_, m) in enumerate(per_bank)]
        if self.config.soft_combine == "min":
            return torch.minimum(z[COLD], z[WARM]), torch.minimum(zmaps[COLD], zmaps[WARM])
        w = p_warm.float()
        return (1 - w) * z[COLD] + w * z[WARM], (1 - w)[:, None, None] * zmaps[COLD] + w[:, None, None] * zmaps[WARM]
