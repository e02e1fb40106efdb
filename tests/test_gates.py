import pytest
import torch

from hdmap.gating.gates import Gate, GateConfig, gate_accuracy


def _separable(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    warm = torch.arange(n) % 2 == 1
    maps = torch.rand(n, 8, 12, generator=g) * 0.3 + 0.1
    maps[warm] *= 1.5
    features = torch.randn(n, 6, generator=g)
    features[warm, 0] += 6.0
    truth = ["warm" if w else "cold" for w in warm]
    return maps, features, truth


@pytest.mark.parametrize("config", [GateConfig("intensity"), GateConfig("feature"), GateConfig("discover"),
                                    GateConfig("discover", discover_on="features"), GateConfig("oracle")])
def test_each_gate_on_separable_data(config):
    maps, features, truth = _separable()
    gate = Gate(config)
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
    gate = Gate(GateConfig("intensity", threshold=10.0))
    assert gate.assign_train(maps, features).sum() == 0  # everything below the threshold: cold
    with pytest.raises(ValueError, match="oracle"):
        Gate(GateConfig("oracle")).route(maps, features, ["unknown"] * len(maps))


def test_gate_state_round_trip():
    maps, features, truth = _separable()
    gate = Gate(GateConfig("feature"))
    gate.assign_train(maps, features)
    fresh = Gate(GateConfig("feature"))
    fresh.load_state_dict(gate.state_dict())
    assert torch.equal(fresh.route(maps, features)[0], gate.route(maps, features)[0])


def test_bad_kind():
    with pytest.raises(ValueError, match="'kind' expects one of oracle, intensity, feature, discover, got 'psychic'"):
        GateConfig("psychic")


def test_feature_gate_routes_each_map_on_its_own():
    maps, features, truth = _separable()
    gate = Gate(GateConfig("feature"))
    gate.assign_train(maps, features)
    _, alone = gate.route(maps[:1], features[:1])
    _, in_batch = gate.route(maps, features)
    assert torch.allclose(alone[0], in_batch[0])
    _, with_others = gate.route(torch.cat([maps[:1], maps[:1] * 3]), torch.cat([features[:1], features[:1] * 10]))
    assert torch.allclose(alone[0], with_others[0])


def test_oracle_without_known_train_conditions_says_so():
    maps, features, truth = _separable()
    gate = Gate(GateConfig("oracle"))
    gate.assign_train(maps, features, ["unknown"] * len(maps))
    assert "train conditions unknown" in gate.train_source
    gate.assign_train(maps, features, truth)
    assert gate.train_source == "known conditions"
