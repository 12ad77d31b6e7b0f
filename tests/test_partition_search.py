"""The simulated-makespan split against exhaustive enumeration; the fast re-simulation against
the reference simulator; memory from the schedule; a heterogeneous and a memory-limited case."""

import random

import pytest

from schedc.errors import SchedError
from schedc.lang.layers import Devices
from schedc.partition.best_split import Evaluator, SplitSearch, choose_split
from schedc.partition.problem import PartitionProblem, family_spec, rank_params, split_spec
from schedc.simulate import simulate
from partition_helpers import all_bounds, model_of

FAMILIES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv", "dualpipe", "dualpipev")
# ranks each family accepts with 4 microbatches (even for DualPipe, microbatches >= 2 x ranks for V)
RANKS = {"interleaved": 2, "zbv": 2, "dualpipev": 2, "dualpipe": 2}


def _problem(family, forwards, ranks=3, microbatches=4, speeds=None, limit=None,
             activations=None, params=None, pins=(), min_layers=1):
    spec = family_spec(family, ranks, microbatches)
    devices = Devices(tuple(speeds or [1.0] * ranks), (limit,) * ranks)
    return PartitionProblem(model_of(forwards, activations, params), spec, devices, pins, min_layers)


def _enumerate(problem):
    """Every split simulated by the reference simulator: the best fitting key, or None."""
    ev, best = Evaluator(problem), None
    for bounds in all_bounds(len(problem.model), problem.num_stages):
        if any(p not in bounds for p in problem.pins):
            continue
        if min(b - a for a, b in zip(bounds, bounds[1:])) < problem.min_layers:
            continue
        result = ev.evaluate(bounds)
        if result.fits and (best is None or result.key() < best.key()):
            best = result
    return best


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_resimulation_equals_the_reference_simulator(family):
    rng = random.Random(family)
    problem = _problem(family, [rng.randint(1, 6) for _ in range(9)], ranks=RANKS.get(family, 3),
                       activations=[rng.randint(0, 3) for _ in range(9)],
                       params=[rng.randint(0, 2) for _ in range(9)])
    ev = Evaluator(problem)
    for bounds in list(all_bounds(9, problem.num_stages))[::7]:
        spec = split_spec(problem, bounds)
        timeline = simulate(spec, ev.compiled.dag, ev.compiled.plan)
        got = ev.evaluate(bounds)
        assert got.makespan == pytest.approx(timeline.makespan)
        want = [r.peak_activations + p for r, p in zip(timeline.ranks, rank_params(problem, bounds))]
        assert list(got.memory) == pytest.approx(want)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_lower_bound_the_search_uses_holds_on_every_split(family):
    """The cuts are sound: on every split of a small case, each bound the search computes on the
    way to it is at most the split's simulated makespan."""
    rng = random.Random(family)
    layers, ranks = 8, 4 if family == "dualpipe" else RANKS.get(family, 3)
    speeds = None if family == "dualpipe" else [2.0] + [1.0] * (ranks - 1)  # DualPipe: equal only
    problem = _problem(family, [rng.choice([1, 2, 3, 5]) for _ in range(layers)], ranks=ranks,
                       microbatches=8, speeds=speeds)
    ev = Evaluator(problem)
    search = SplitSearch(problem, ev, budget=10)
    for bounds in all_bounds(layers, problem.num_stages):
        makespan = ev.evaluate(bounds).makespan
        assert max(search.bounds_along(bounds)) <= makespan + 1e-9, bounds


@pytest.mark.parametrize("seed", range(12))
def test_search_matches_enumeration_on_small_cases(seed):
    rng = random.Random(seed)
    family = FAMILIES[seed % len(FAMILIES)]
    ranks = RANKS.get(family, 3)
    layers = rng.randint(6, 8)
    problem = _problem(family, [rng.choice([1, 2, 3, 5]) for _ in range(layers)], ranks=ranks,
                       microbatches=4, activations=[rng.randint(0, 2) for _ in range(layers)],
                       params=[rng.randint(0, 2) for _ in range(layers)])
    choice = choose_split(problem)
    assert choice.exact
    assert choice.best.key() == _enumerate(problem).key()
    assert choice.lower_bound <= choice.best.makespan + 1e-9


def test_heterogeneous_devices_checked_by_enumeration():
    """One fast rank of three: the fast rank takes the larger share, and the search finds the
    enumerated optimum."""
    problem = _problem("1f1b", [1, 1, 1, 1, 1, 1, 1, 1, 1], ranks=3, microbatches=6, speeds=[2.0, 1.0, 1.0])
    choice, want = choose_split(problem), _enumerate(problem)
    assert choice.exact and choice.best.key() == want.key()
    sizes = [b - a for a, b in zip(choice.best.bounds, choice.best.bounds[1:])]
    assert sizes[0] > max(sizes[1:])


def test_memory_limited_case_checked_by_enumeration():
    """A limit below what the unconstrained optimum needs: the search returns the enumerated best
    split within the limit, which is slower than the unconstrained one."""
    forwards, acts = [2, 1, 1, 1, 1, 1, 1, 2], [3, 1, 1, 1, 1, 1, 1, 1]
    free = choose_split(_problem("1f1b", forwards, microbatches=6, activations=acts))
    limit = max(free.best.memory) - 1
    limited = _problem("1f1b", forwards, microbatches=6, activations=acts, limit=limit)
    choice, want = choose_split(limited), _enumerate(limited)
    assert choice.exact and choice.best.key() == want.key()
    assert max(choice.best.memory) <= limit
    assert choice.best.makespan > free.best.makespan


def test_schedule_decides_the_memory_1f1b_holds_less_than_gpipe():
    forwards, acts = [1] * 6, [1] * 6
    peaks = {f: max(choose_split(_problem(f, forwards, microbatches=6, activations=acts)).best.memory)
             for f in ("gpipe", "1f1b")}
    assert peaks["1f1b"] < peaks["gpipe"]


def test_dualpipe_counts_two_parameter_replicas():
    problem = _problem("dualpipe", [1] * 4, ranks=2, params=[1] * 4)
    result = Evaluator(problem).evaluate((0, 2, 4))
    assert result.memory == (4, 4)  # stages 0 and 1 on both ranks, 2 layers x 1 each


def test_a_limit_no_split_meets_says_the_smallest():
    problem = _problem("1f1b", [1] * 6, microbatches=6, activations=[1] * 6, limit=2)
    with pytest.raises(SchedError, match="the smallest any split reaches is 4"):
        choose_split(problem)


def test_pins_and_min_layers_are_respected():
    problem = _problem("1f1b", [1, 5, 1, 1, 1, 1, 1, 1], pins=(3,), min_layers=2)
    choice = choose_split(problem)
    assert 3 in choice.best.bounds
    assert min(b - a for a, b in zip(choice.best.bounds, choice.best.bounds[1:])) >= 2
    assert choice.best.key() == _enumerate(problem).key()
