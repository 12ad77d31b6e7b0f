"""Migration-aware planning for live balancing (`plan_experts(..., previous=, tolerance=)`): on a
drifting load it changes far fewer slots than a fresh plan and stays within the tolerance."""

import numpy as np
import pytest

from schedc.errors import SchedError
from schedc.experts import plan_experts
from schedc.experts.planner import placement_loads


def zipf_drift(layers, experts, windows, seed=3):
    rng = np.random.default_rng(seed)
    weight = np.stack([rng.permutation(1.0 / np.arange(1, experts + 1)) for _ in range(layers)]) * 1e4
    out = []
    for _ in range(windows):
        out.append(np.round(weight))
        weight = weight * rng.lognormal(0, 0.1, weight.shape)
    return out


@pytest.mark.parametrize("tolerance", [0.0, 0.02, 0.1])
def test_tolerance_trades_a_bounded_slowdown_for_fewer_moves(tolerance):
    loads = zipf_drift(4, 32, 5)
    placement = plan_experts(loads[0], 40, 1, 1, 4).phy2log
    for weight in loads[1:]:
        best = plan_experts(weight, 40, 1, 1, 4, previous=placement)
        near = plan_experts(weight, 40, 1, 1, 4, previous=placement, tolerance=tolerance)
        slowest = placement_loads(weight, near.phy2log, 4).max(axis=1)
        assert (slowest <= placement_loads(weight, best.phy2log, 4).max(axis=1) * (1 + tolerance) + 1e-6).all()
        assert (near.moves <= best.moves).all()
        assert np.array_equal(near.moves, (near.phy2log != placement).sum(axis=1))
        for row in near.phy2log:  # every expert keeps a replica, none twice on a GPU
            assert set(row.tolist()) == set(range(32))
            assert all(len(set(g)) == len(g) for g in row.reshape(4, -1).tolist())
        placement = near.phy2log


def test_two_percent_moves_at_most_a_third_of_a_fresh_plans_slots():
    loads = zipf_drift(8, 64, 6)
    placement = plan_experts(loads[0], 80, 1, 1, 8).phy2log
    ours = fresh = 0
    for weight in loads[1:]:
        near = plan_experts(weight, 80, 1, 1, 8, previous=placement, tolerance=0.02)
        fresh += int((plan_experts(weight, 80, 1, 1, 8).phy2log != placement).sum())
        ours += int(near.moves.sum())
        placement = near.phy2log
    assert ours <= fresh / 3


def test_a_tolerance_needs_the_previous_placement():
    with pytest.raises(SchedError, match="needs the previous placement"):
        plan_experts(np.ones((1, 4)), 4, 1, 1, 2, tolerance=0.1)
