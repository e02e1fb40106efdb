"""Gates that decide whether a map is cold (0) or warm (1): one small class per gate, each with its own buffers, and
the `GATES` registry (adding a gate is one class and one line there).

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

class Gate(ResizableBuffers):
    """A fitted gate; its parameters are buffers so checkpoints carry them. Subclasses fit in `assign_train` and
    route in `route`."""

    def __init__(self, config: "GateSettings | None" = None, feature_dim: int = 0):
        super().__init__()
        self.config = config or GateSettings()
        self.train_source = ""  # how train conditions were assigned (reported in metrics.json)

    @classmethod
    def reads_features(cls, config: "GateSettings") -> bool:
        """Whether a gate of these settings reads global (backbone) features; else maps or known conditions
        suffice."""
        return False

    @property
    def uses_features(self) -> bool:
        return type(self).reads_features(self.config)

    def assign_train(self, maps: torch.Tensor, features: torch.Tensor | None,
                     truth: list[str] | None = None) -> torch.Tensor:
        """Fit the gate on unlabelled train maps and return their condition codes (0 cold, 1 warm)."""
        raise NotImplementedError

    def route(self, maps: torch.Tensor, features: torch.Tensor | None,
              known: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(condition codes, probability of warm) for each map."""
        raise NotImplementedError

    def intensity_split_is_clear(self, maps: torch.Tensor, assignment: torch.Tensor) -> tuple[bool, str]:
        """(is the train split clearly bimodal?, why) for a gate that does not read features: known conditions
        always are; otherwise the intensity percentile it routes by must be bimodal (`is_bimodal`)."""
        if self.train_source == "known conditions":
            return True, "known conditions"
        return is_bimodal(map_percentile(maps.float().cpu(), self.config.percentile), assignment.cpu())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints from before the gate registry carried every gate's buffers: those of other gates are
        dropped."""
        for key in [k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):]]:
            if key[len(prefix):] not in self._buffers:
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class IntensityGate(Gate):
    """A percentile of the map against a threshold (explicit, or the midpoint of a 2-means on train)."""

    def __init__(self, config: "GateSettings | None" = None, feature_dim: int = 0):
        super().__init__(config, feature_dim)
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.register_buffer("spread", torch.tensor(1.0))

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

    def assign_train(self, maps, features, truth=None):
        self.train_source = f"{self.config.kind} gate"
        self._fit_intensity(maps)
        return self._intensity_route(maps)[0]

    def route(self, maps, features, known=None):
        return self._intensity_route(maps)


class OracleGate(IntensityGate):
    """Known conditions (an upper bound); train from a condition CSV when given, else intensity 2-means."""

    def assign_train(self, maps, features, truth=None):
        if truth is not None and all(t in CONDITIONS for t in truth):
            self.train_source = "known conditions"
            return codes_of(truth, maps.device)
        super().assign_train(maps, features, truth)
        self.train_source = ("intensity 2-means: train conditions unknown (pass a condition CSV that lists the "
                             "train maps for a true oracle)")
        return self._intensity_route(maps)[0]

    def route(self, maps, features, known=None):
        if known is None or any(k not in CONDITIONS for k in known):
            raise ValueError("the oracle gate needs the known condition of every map (cold/warm)")
        codes = codes_of(known, maps.device)
        return codes, codes.double()


def _add_centroids(gate: Gate, feature_dim: int) -> None:
    gate.register_buffer("centroids", torch.zeros(2, feature_dim))
    gate.register_buffer("centroid_scale", torch.tensor(1.0))  # fixed on train: routing is per map


def _centroid_distances(gate: Gate, features):
    return torch.cdist(features.float(), gate.centroids.float()) ** 2


def _centroid_route(gate: Gate, features):
    """Nearest centroid; p_warm from a softmax whose scale was fixed on train, so it depends on this map only."""
    distances = _centroid_distances(gate, features)
    p_warm = torch.softmax(-distances / gate.centroid_scale, dim=1)[:, WARM]
    return distances.argmin(1), p_warm


def _fit_centroids(gate: Gate, features: torch.Tensor, assignment: torch.Tensor) -> None:
    centroids = []
    for code in (COLD, WARM):
        members = features[assignment == code]
        if len(members) == 0:
            raise ValueError(f"gate '{gate.config.kind}': no train map was assigned to "
                             f"{'cold' if code == COLD else 'warm'}; cannot fit a centroid")
        centroids.append(members.float().mean(0))
    gate.centroids = torch.stack(centroids)
    gate.centroid_scale = _centroid_distances(gate, features).min(1).values.mean().clamp_min(1e-12)


class FeatureGate(IntensityGate):
    """Nearest centroid of global features; centroids from the intensity 2-means split of train."""

    def __init__(self, config: "GateSettings | None" = None, feature_dim: int = 0):
        super().__init__(config, feature_dim)
        _add_centroids(self, feature_dim)

    @classmethod
    def reads_features(cls, config) -> bool:
        return True

    def assign_train(self, maps, features, truth=None):
        assignment = super().assign_train(maps, features, truth)
        _fit_centroids(self, features, assignment)
        return _centroid_route(self, features)[0]

    def route(self, maps, features, known=None):
        return _centroid_route(self, features)


class DiscoverGate(Gate):
    """A 2-component Gaussian mixture on (mean, percentile) intensity, or 2-means on global features."""

    def __init__(self, config: "GateSettings | None" = None, feature_dim: int = 0):
        super().__init__(config, feature_dim)
        if self.uses_features:
            _add_centroids(self, feature_dim)
        else:
            self.register_buffer("gmm_means", torch.zeros(2, 2, dtype=torch.float64))
            self.register_buffer("gmm_variances", torch.ones(2, 2, dtype=torch.float64))
            self.register_buffer("gmm_weights", torch.full((2,), 0.5, dtype=torch.float64))

    @classmethod
    def reads_features(cls, config) -> bool:
        return config.discover_on == "features"

    def _stats(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.stack([maps.flatten(1).float().mean(1), map_percentile(maps, self.config.percentile)], 1)

    def assign_train(self, maps, features, truth=None):
        self.train_source = "discover gate"
        if not self.uses_features:
            self.gmm_means, self.gmm_variances, self.gmm_weights = fit_gmm(self._stats(maps))
            if self.gmm_means[0, 0] > self.gmm_means[1, 0]:  # brighter component is warm
                self.gmm_means, self.gmm_variances = self.gmm_means.flip(0), self.gmm_variances.flip(0)
                self.gmm_weights = self.gmm_weights.flip(0)
            return self.route(maps, features)[0]
        labels = two_means(features.float(), self.config.seed)
        brightness = [maps[labels == c].mean().item() if (labels == c).any() else -1 for c in (0, 1)]
        if brightness[0] > brightness[1]:
            labels = 1 - labels
        _fit_centroids(self, features, labels)
        return labels

    def route(self, maps, features, known=None):
        if self.uses_features:
            return _centroid_route(self, features)
        posterior = gmm_posterior(self._stats(maps), self.gmm_means, self.gmm_variances, self.gmm_weights)
        return posterior.argmax(1), posterior[:, WARM]


# The gates: `gate.kind` names one; adding a gate is one class above and one line here.
GATES: dict[str, type[Gate]] = {"oracle": OracleGate, "intensity": IntensityGate, "feature": FeatureGate,
                                "discover": DiscoverGate}
DISCOVER_ON = ("intensity", "features")


@dataclass(frozen=True)
class GateSettings:
    kind: str = setting("intensity", "how a map is routed cold or warm: a map percentile against a threshold "
                        "(intensity), the nearest centroid of global backbone features (feature), a 2-component "
                        "mixture on intensity or 2-means on features (discover), or the known conditions (oracle: "
                        "an upper bound)", choices=GATES)
    percentile: float = setting(90.0, "intensity gate: the map percentile it thresholds", low=0, high=100,
                                low_open=True)
    threshold: float | None = setting(None, "explicit intensity threshold; null = fitted on train")
    discover_on: str = setting("intensity", "discover gate: what it splits", choices=DISCOVER_ON)
    seed: int = setting(0, "seed of the feature gate's 2-means", low=0)

    def __post_init__(self):
        check_instance(self)

    @property
    def uses_features(self) -> bool:
        """Whether this gate reads global (backbone) features; else maps or known conditions suffice."""
        return GATES[self.kind].reads_features(self)


def build_gate(config: GateSettings | None = None, feature_dim: int = 0) -> Gate:
    """The gate `config.kind` names, unfitted."""
    config = config or GateSettings()
    return GATES[config.kind](config, feature_dim)


def gate_accuracy(routed: torch.Tensor, known: list[str]) -> float | None:
    """Share of maps routed to their known condition; None when conditions are unknown."""
    pairs = [(int(r), k) for r, k in zip(routed.tolist(), known) if k in CONDITIONS]
    if not pairs:
        return None
    return float(np.mean([(r == WARM) == (k == "warm") for r, k in pairs]))
