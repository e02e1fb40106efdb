"""Gates that decide whether a map is cold (0) or warm (1).

Each gate first splits the unlabelled train set into two conditions (`assign_train`; this also fits it), then
routes any map (`route`). The brighter group is always `warm`.
- oracle: known conditions (an upper bound); train from a condition CSV when given, else intensity 2-means.
- intensity: a percentile of the map against a threshold (explicit, or the midpoint of a 2-means on train).
- feature: nearest centroid of global features; centroids from the intensity 2-means split of train.
- discover: a 2-component Gaussian mixture on (mean, percentile) intensity, or 2-means on global features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdmap.condition_names import COLD, CONDITIONS, WARM, codes_of
from hdmap.resizable_buffers import ResizableBuffers
from hdmap.setting_rules import check_instance, setting
from hdmap.statistics import fit_gmm, gmm_posterior, is_bimodal, map_percentile, two_means, two_means_1d

GATE_KINDS = ("oracle", "intensity", "feature", "discover")
DISCOVER_ON = ("intensity", "features")


@dataclass(frozen=True)
class GateConfig:
    kind: str = setting("intensity", "how a map is routed cold or warm: a map percentile against a threshold "
                        "(intensity), the nearest centroid of global backbone features (feature), a 2-component "
                        "mixture on intensity or 2-means on features (discover), or the known conditions (oracle: "
                        "an upper bound)", choices=GATE_KINDS)
    percentile: float = setting(90.0, "intensity gate: the map percentile it thresholds", low=0, high=100,
                                low_open=True)
    threshold: float | None = setting(None, "explicit intensity threshold; null = fitted on train")
    discover_on: str = setting("intensity", "discover gate: what it splits", choices=DISCOVER_ON)
    seed: int = setting(0, "seed of the feature gate's 2-means")

    def __post_init__(self):
        check_instance(self)

    @property
    def uses_features(self) -> bool:
        """Whether this gate reads global (backbone) features; else maps or known conditions suffice."""
        return self.kind == "feature" or (self.kind == "discover" and self.discover_on == "features")



class Gate(ResizableBuffers):
    """A fitted gate; its parameters are buffers so checkpoints carry them."""

    def __init__(self, config: GateConfig | None = None, feature_dim: int = 0):
        super().__init__()
        self.config = config or GateConfig()
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.register_buffer("spread", torch.tensor(1.0))
        self.register_buffer("centroids", torch.zeros(2, feature_dim))
        self.register_buffer("centroid_scale", torch.tensor(1.0))  # fixed on train: routing is per map
        self.register_buffer("gmm_means", torch.zeros(2, 2, dtype=torch.float64))
        self.register_buffer("gmm_variances", torch.ones(2, 2, dtype=torch.float64))
        self.register_buffer("gmm_weights", torch.full((2,), 0.5, dtype=torch.float64))
        self.train_source = ""  # how train conditions were assigned (reported in metrics.json)

    @property
    def uses_features(self) -> bool:
        """Whether this gate reads global features (else maps or known conditions suffice)."""
        return self.config.uses_features

    def intensity_split_is_clear(self, maps: torch.Tensor, assignment: torch.Tensor) -> tuple[bool, str]:
        """(is the train split clearly bimodal?, why) for a gate that does not read features: known conditions
        always are; otherwise the intensity percentile it routes by must be bimodal (`is_bimodal`)."""
        if self.train_source == "known conditions":
            return True, "known conditions"
        return is_bimodal(map_percentile(maps.float().cpu(), self.config.percentile), assignment.cpu())

    def _stats(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.stack([maps.flatten(1).float().mean(1), map_percentile(maps, self.config.percentile)], 1)

    def _fit_intensity(self, maps: torch.Tensor) -> None:
        stat = map_percentile(maps, self.config.percentile)
        if self.config.threshold is not None:
            self.threshold = torch.tensor(float(self.config.threshold), device=maps.device)
            self.spread = stat.std().clamp_min(1e-6) / 4
            return
        low, high = two_means_1d(stat)
        self.threshold = torch.tensor((low + high) / 2, device=maps.device)
        self.spread = torch.tensor(max((high - low) / 8, 1e-6), device=maps.device)

    def _intensity_route(self, maps):
        stat = map_percentile(maps, self.config.percentile)
        p_warm = torch.sigmoid((stat - self.threshold) / self.spread)
        return (stat > self.threshold).long(), p_warm

    def _centroid_distances(self, features):
        return torch.cdist(features.float(), self.centroids.float()) ** 2

    def _centroid_route(self, features):
        """Nearest centroid; p_warm from a softmax whose scale was fixed on train, so it depends on this map only."""
        distances = self._centroid_distances(features)
        p_warm = torch.softmax(-distances / self.centroid_scale, dim=1)[:, WARM]
        return distances.argmin(1), p_warm

    def _fit_centroids(self, features: torch.Tensor, assignment: torch.Tensor) -> None:
        centroids = []
        for code in (COLD, WARM):
            members = features[assignment == code]
            if len(members) == 0:
                raise ValueError(f"gate '{self.config.kind}': no train map was assigned to "
                                 f"{'cold' if code == COLD else 'warm'}; cannot fit a centroid")
            centroids.append(members.float().mean(0))
        self.centroids = torch.stack(centroids)
        self.centroid_scale = self._centroid_distances(features).min(1).values.mean().clamp_min(1e-12)

    def assign_train(self, maps: torch.Tensor, features: torch.Tensor, truth: list[str] | None = None) -> torch.Tensor:
        """Fit the gate on unlabelled train maps and return their condition codes (0 cold, 1 warm)."""
        kind = self.config.kind
        known = truth is not None and all(t in CONDITIONS for t in truth)
        self.train_source = "known conditions" if kind == "oracle" and known else f"{kind} gate"
        if kind == "oracle" and known:
            return codes_of(truth, maps.device)
        if kind == "oracle":
            self.train_source = ("intensity 2-means: train conditions unknown (pass a condition CSV that lists the "
                                 "train maps for a true oracle)")
        if kind == "discover" and self.config.discover_on == "intensity":
            stats = self._stats(maps)
            self.gmm_means, self.gmm_variances, self.gmm_weights = fit_gmm(stats)
            if self.gmm_means[0, 0] > self.gmm_means[1, 0]:  # brighter component is warm
                self.gmm_means, self.gmm_variances = self.gmm_means.flip(0), self.gmm_variances.flip(0)
                self.gmm_weights = self.gmm_weights.flip(0)
            return self.route(maps, features)[0]
        if kind == "discover":
            labels = two_means(features.float(), self.config.seed)
            brightness = [maps[labels == c].mean().item() if (labels == c).any() else -1 for c in (0, 1)]
            if brightness[0] > brightness[1]:
                labels = 1 - labels
            self._fit_centroids(features, labels)
            return labels
        self._fit_intensity(maps)
        assignment = self._intensity_route(maps)[0]
        if kind == "feature":
            self._fit_centroids(features, assignment)
            return self._centroid_route(features)[0]
        return assignment

    def route(self, maps: torch.Tensor, features: torch.Tensor,
              known: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(condition codes, probability of warm) for each map."""
        kind = self.config.kind
        if kind == "oracle":
            if known is None or any(k not in CONDITIONS for k in known):
                raise ValueError("the oracle gate needs the known condition of every map (cold/warm)")
            codes = codes_of(known, maps.device)
            return codes, codes.double()
        if kind == "intensity":
            return self._intensity_route(maps)
        if kind == "feature" or self.config.discover_on == "features":
            return self._centroid_route(features)
        posterior = gmm_posterior(self._stats(maps), self.gmm_means, self.gmm_variances, self.gmm_weights)
        return posterior.argmax(1), posterior[:, WARM]



def gate_accuracy(routed: torch.Tensor, known: list[str]) -> float | None:
    """Share of maps routed to their known condition; None when conditions are unknown."""
    pairs = [(int(r), k) for r, k in zip(routed.tolist(), known) if k in CONDITIONS]
    if not pairs:
        return None
    return float(np.mean([(r == WARM) == (k == "warm") for r, k in pairs]))
