"""The live rebalancer's planner (`plan_experts(previous=..., tolerance=...)`, experts/nearby.py):
few moves from the placement in use, every layer within 1 + tolerance of a lower bound where the
greedy reaches it (so of any plan), never worse than 1 + tolerance of a fresh plan, valid
placements, and the fresh plan's way for the layers it does not reach."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedc.experts.nearby as nearby
from schedc.experts import plan_experts
from schedc.experts.joint import lower_bound


def drifting(layers, experts, seed, sigma=0.1):
    rng = np.random.default_rng(seed)
    base = 1.0 / np.arange(1, experts + 1)
    weight = np.stack([rng.permutation(base) for _ in range(layers)]) * 10_000
    return weight, np.round(weight * rng.lognormal(0, sigma, weight.shape))


def assert_valid(phy2log, experts, gpus):
    for layer in phy2log:
        assert set(layer.tolist()) == set(range(experts))  # every expert keeps a replica
        for gpu in layer.reshape(gpus, -1):
            assert len(set(gpu.tolist())) == gpu.size  # no GPU holds two replicas of one expert


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(4, 12), st.sampled_from([2, 3, 4]), st.integers(0, 3),
       st.floats(0, 0.1), st.integers(0, 10_000))
def test_a_plan_from_the_previous_one_is_valid_and_within_the_tolerance_of_a_fresh_plan(
        layers, experts, gpus, spare, tolerance, seed):
    per_gpu = min(-(-experts // gpus) + spare, experts)  # distinct: no more slots on a GPU than experts
    slots = per_gpu * gpus
    rng = np.random.default_rng(seed)
    before, after = (rng.pareto(1.0, (layers, experts)) * 100 + 1 for _ in range(2))
    previous = plan_experts(before, slots, 1, 1, gpus).phy2log
    plan = plan_experts(after, slots, 1, 1, gpus, previous=previous, tolerance=tolerance)
    fresh = plan_experts(after, slots, 1, 1, gpus)
    assert_valid(plan.phy2log, experts, gpus)
    assert (plan.max_time <= fresh.max_time * (1 + tolerance) + 1e-9).all()
    assert (plan.moves == (plan.phy2log != previous).sum(axis=1)).all()


def test_on_a_drifting_load_few_slots_move_and_every_layer_is_near_its_bound():
    layers, experts, slots, gpus, tolerance = 16, 64, 80, 8, 0.02
    before, after = drifting(layers, experts, 1)
    previous = plan_experts(before, slots, 1, 1, gpus).phy2log
    reached = []
    original = nearby.stay_near

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        reached.append(out[1])
        return out

    nearby.stay_near = spy
    try:
        plan = plan_experts(after, slots, 1, 1, gpus, previous=previous, tolerance=tolerance)
    finally:
        nearby.stay_near = original
    fresh = plan_experts(after, slots, 1, 1, gpus)
    assert reached[0].all()  # the greedy reached every layer: no fresh plan was made
    bound = lower_bound(after, slots, np.ones((layers, gpus)), gpus)
    assert (plan.max_time <= bound * (1 + tolerance) + 1e-9).all()
    assert plan.moves.sum() <= (fresh.phy2log != previous).sum() / 10
    assert_valid(plan.phy2log, experts, gpus)


def test_a_placement_already_within_its_target_moves_nothing():
    weight, _ = drifting(3, 32, 2)
    previous = plan_experts(weight, 40, 1, 1, 4).phy2log
    time = plan_experts(weight, 40, 1, 1, 4, previous=previous, tolerance=1.0).max_time
    slots, reached = nearby.stay_near(weight, previous, time, np.ones(4), 4, True)
    assert reached.all() and (slots == previous).all()


def test_layers_the_greedy_cannot_reach_get_the_fresh_plans_way(monkeypatch):
    before, after = drifting(4, 16, 3, sigma=0.5)
    previous = plan_experts(before, 20, 1, 1, 4).phy2log
    monkeypatch.setattr(nearby, "stay_near", lambda weight, old, *rest: (old.copy(), np.array([True, False] * 2)))
    mixed = plan_experts(after, 20, 1, 1, 4, previous=previous, tolerance=0.0)
    monkeypatch.setattr(nearby, "stay_near", lambda weight, old, *rest: (old.copy(), np.zeros(len(old), bool)))
    fallback = plan_experts(after, 20, 1, 1, 4, previous=previous, tolerance=0.0)
    assert (mixed.phy2log[0::2] == previous[0::2]).all()
    assert (mixed.phy2log[1::2] == fallback.phy2log[1::2]).all()
    assert (fallback.moves > 0).any()  # the fresh plan's way did change something


def test_the_same_inputs_give_the_same_placement():
    before, after = drifting(8, 64, 4)
    previous = plan_experts(before, 72, 1, 1, 8).phy2log
    one = plan_experts(after, 72, 1, 1, 8, previous=previous, tolerance=0.02).phy2log
    two = plan_experts(after, 72, 1, 1, 8, previous=previous.copy(), tolerance=0.02).phy2log
    assert (one == two).all()


@pytest.mark.parametrize("speeds", [[1, 1, 2, 2], [1, 2, 1, 0.5]])
def test_gpu_speeds_count_in_the_target(speeds):
    before, after = drifting(3, 24, 5)
    previous = plan_experts(before, 28, 1, 1, 4, speeds=speeds).phy2log
    plan = plan_experts(after, 28, 1, 1, 4, speeds=speeds, previous=previous, tolerance=0.05)
    fresh = plan_experts(after, 28, 1, 1, 4, speeds=speeds)
    assert (plan.max_time <= fresh.max_time * 1.05 + 1e-9).all()
    assert_valid(plan.phy2log, 24, 4)
