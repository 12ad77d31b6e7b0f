"""The min-max bottleneck split (DP) against brute force, and the published cases."""

import random

import pytest

from schedc.partition.anchors import deepspeed_balanced, megatron_flag_bounds, torchtitan_bounds, uniform_bounds
from schedc.partition.minmax import minmax_split
from partition_helpers import all_bounds, public_model


def _slowest(weights, bounds, speeds=None):
    speeds = speeds or [1] * (len(bounds) - 1)
    return max(sum(weights[a:b]) / speeds[s] for s, (a, b) in enumerate(zip(bounds, bounds[1:])))


def _brute(weights, stages, speeds, cap, min_layers, pins):
    best = None
    for bounds in all_bounds(len(weights), stages):
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        if min(sizes) < min_layers or any(p not in bounds for p in pins):
            continue
        if any(not cap(s, a, b) for s, (a, b) in enumerate(zip(bounds, bounds[1:]))):
            continue
        value = _slowest(weights, bounds, speeds)
        if best is None or value < best[0] - 1e-12:
            best = (value, bounds)  # the first optimal split in lexicographic order
    return best


def test_deepspeed_counterexample_minmax_is_7_deepspeed_gives_9():
    weights = [2, 7, 5, 2, 3, 4]
    value, bounds = minmax_split(weights, 4)
    assert value == 7 and _slowest(weights, bounds) == 7
    assert _slowest(weights, deepspeed_balanced(weights, 4)) == 9


def test_public_case_slowest_stage_5_with_the_unique_split():
    costs = [3] + [1] * 32 + [5]
    value, bounds = minmax_split(costs, 8)
    assert value == 5
    assert bounds == (0, 3, 8, 13, 18, 23, 28, 33, 34)  # E + 2 blocks | 5 blocks x 6 | head
    optimal = [b for b in _splits_with_value(costs, 8, 5)]
    assert optimal == [bounds]


def _splits_with_value(costs, stages, value):
    """Splits with slowest stage <= value, found by a small DFS (the space is too big to list)."""
    out = []

    def extend(at, bounds):
        if len(bounds) == stages:
            if at < len(costs) and sum(costs[at:]) <= value:
                out.append((*bounds, len(costs)))
            return
        total = 0
        for end in range(at + 1, len(costs)):
            total += costs[end - 1]
            if total > value:
                break
            extend(end, bounds + [end])

    extend(0, [0])
    return out


def test_public_case_anchors_9_6_8():
    model, costs = public_model(), [3] + [1] * 32 + [5]
    assert _slowest(costs, uniform_bounds(model, 8)) == 9
    assert min(_slowest(costs, b) for _ab, b in megatron_flag_bounds(model, 8)) == 6
    assert _slowest(costs, torchtitan_bounds(model, 8)) == 8


@pytest.mark.parametrize("seed", range(60))
def test_minmax_matches_brute_force(seed):
    rng = random.Random(seed)
    layers, stages = rng.randint(2, 9), rng.randint(1, 4)
    stages = min(stages, layers)
    weights = [rng.choice([0.5, 1, 2, 3, 5, 7]) for _ in range(layers)]
    speeds = [rng.choice([1, 1, 2, 0.5]) for _ in range(stages)]
    min_layers = rng.choice([1, 1, 2])
    pins = tuple(sorted(rng.sample(range(1, layers), k=min(layers - 1, rng.randint(0, 1)))))
    memory = [rng.randint(0, 3) for _ in range(layers)]
    limit = rng.choice([None, 4, 6])

    def cap(s, i, j):
        return limit is None or sum(memory[i:j]) * (stages - s) <= limit

    want = _brute(weights, stages, speeds, cap, min_layers, pins)
    value, bounds = minmax_split(weights, stages, speeds, cap, min_layers, pins)
    if want is None:
        assert bounds is None and value == float("inf")
        return
    assert value == pytest.approx(want[0])
    assert bounds == want[1]
