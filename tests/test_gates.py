import pytest
import torch

from hdmap.gating.gates import GATES, Gate, GateSettings, build_gate, gate_accuracy


def _separable(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    warm = torch.arange(n) % 2 == 1
    maps = torch.rand(n, 8, 12, generator=g) * 0.3 + 0.1
    maps[warm] *= 1.5
    features = torch.randn(n, 6, generator=g)
    features[warm, 0] += 6.0
    truth = ["warm" if w else "cold" for w in warm]
    return maps, features, truth


@pytest.mark.parametrize("config", [GateSettings("intensity"), GateSettings("feature"), GateSettings("discover"),
                                    GateSettings("discover", discover_on="features"), GateSettings("oracle")])
def test_each_gate_on_separable_data(config):
    maps, features, truth = _separable()
    gate = build_gate(config)
    assignment = gate.assign_train(maps, features, truth)
    assert gate_accuracy(assignment, truth) == 1.0
    test_maps, test_features, test_truth = _separable(seed=1)
    route, p_warm = gate.route(test_maps, test_features, test_truth)
    assert gate_accuracy(route, test_truth) == 1.0
    assert ((p_warm > 0.5).long() == route).all()
    if config.kind == "oracle":  # 1.0 above holds by construction; what it must do: follow the conditions it is told
        told = ["cold" if c == "warm" else "warm" for c in test_truth]
        assert gate_accuracy(gate.route(test_maps, test_features, told)[0], test_truth) == 0.0


def test_explicit_threshold_and_oracle_needs_conditions():
    maps, features, truth = _separable()
    gate = build_gate(GateSettings("intensity", threshold=10.0))
    assert gate.assign_train(maps, features).sum() == 0  # everything below the threshold: cold
    with pytest.raises(ValueError, match="oracle"):
        build_gate(GateSettings("oracle")).route(maps, features, ["unknown"] * len(maps))


def test_gate_state_round_trip():
    maps, features, truth = _separable()
    gate = build_gate(GateSettings("feature"))
    gate.assign_train(maps, features)
    fresh = build_gate(GateSettings("feature"))
    fresh.load_state_dict(gate.state_dict())
    assert torch.equal(fresh.route(maps, features)[0], gate.route(maps, features)[0])


def test_bad_kind():
    with pytest.raises(ValueError, match="'kind' expects one of oracle, intensity, feature, discover, got 'psychic'"):
        GateSettings("psychic")


def test_feature_gate_routes_each_map_on_its_own():
    maps, features, truth = _separable()
    gate = build_gate(GateSettings("feature"))
    gate.assign_train(maps, features)
    _, alone = gate.route(maps[:1], features[:1])
    _, in_batch = gate.route(maps, features)
    assert torch.allclose(alone[0], in_batch[0])
    _, with_others = gate.route(torch.cat([maps[:1], maps[:1] * 3]), torch.cat([features[:1], features[:1] * 10]))
    assert torch.allclose(alone[0], with_others[0])


def test_oracle_without_known_train_conditions_says_so():
    maps, features, truth = _separable()
    gate = build_gate(GateSettings("oracle"))
    gate.assign_train(maps, features, ["unknown"] * len(maps))
    assert "train conditions unknown" in gate.train_source
    gate.assign_train(maps, features, truth)
    assert gate.train_source == "known conditions"


class MeanGate(Gate):
    """A new gate, as one would add it: its own buffer, fit and routing (a map's mean against a 2-means cut)."""

    def __init__(self, config=None, feature_dim=0):
        super().__init__(config, feature_dim)
        self.register_buffer("cut", torch.tensor(float("nan")))

    def assign_train(self, maps, features, truth=None):
        means = maps.flatten(1).float().mean(1)
        low, high = means.min(), means.max()
        for _ in range(20):  # 2-means in one dimension
            mid = (low + high) / 2
            low, high = means[means <= mid].mean(), means[means > mid].mean()
        self.cut = (low + high) / 2
        self.train_source = "mean gate"
        return self.route(maps, features)[0]

    def route(self, maps, features, known=None):
        means = maps.flatten(1).float().mean(1)
        return (means > self.cut).long(), (means > self.cut).double()


def test_a_new_gate_is_one_class_and_one_registry_line(monkeypatch, domain_c):
    """Registered, the gate is a valid `gate.kind` of every settings tree, is built by the detectors and routes their
    maps; its checkpoint state holds its own buffer and no other gate's."""
    from hdmap.kinds.registry import fit_and_score, validate
    from hdmap.kinds.registry import default_config

    with pytest.raises(Exception, match="gate.kind"):
        validate({**default_config(model_name="band"), "band": {"gate": {"kind": "mean"}}})
    monkeypatch.setitem(GATES, "mean", MeanGate)  # the one registry line
    config = {**default_config(model_name="band"), "band": {"per_condition": True, "gate": {"kind": "mean"}}}
    module, _, metrics = fit_and_score(validate(config), domain_c)
    assert metrics["gate"]["kind"] == "mean" and metrics["gate"]["train_assignment"] == "mean gate"
    assert metrics["gate"]["accuracy"] > 0.9  # warm maps are brighter: the mean separates them
    gate_state = [key.split(".")[-1] for key in module.state_dict() if ".gate." in key]
    assert gate_state == ["cut"]


def test_checkpoints_from_before_the_gate_registry_load():
    """Before the registry every gate carried every gate's buffers: a state with all of them loads into one gate."""
    maps, features, truth = _separable()
    gate = build_gate(GateSettings("intensity"))
    gate.assign_train(maps, features, truth)
    old_state = {**gate.state_dict(), "centroids": torch.zeros(2, 6), "centroid_scale": torch.tensor(1.0),
                 "gmm_means": torch.zeros(2, 2, dtype=torch.float64)}
    fresh = build_gate(GateSettings("intensity"))
    fresh.load_state_dict(old_state)  # strict: the other gates' buffers are dropped, not refused
    assert torch.equal(fresh.route(maps, features)[0], gate.route(maps, features)[0])
