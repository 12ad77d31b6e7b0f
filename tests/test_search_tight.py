"""Search under a tight memory limit: within 2% of the optimum CP-SAT proves (issue 24), and the
serial scheme of the list scheduler, which lets a rank wait for memory, gives back any plan from
its start times (what the active scheme cannot: it starts whatever is ready)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedc
from schedc.compiler import compile_spec
from schedc.search.evaluate import start_times
from schedc.search.list_scheduler import BANKER, MODES, PLAIN, list_schedule
from schedc.search.problem import build_problem

V = ("pipeline t {{ ranks = 4  microbatches = {m}  placement = v  schedule = search "
     "cost {{ F = {F}  B = {B}  W = {W} }}  memory {{ activation = 0.5  limit = 2 }} }}")

# (microbatches, F, B, W): CP-SAT's proven optimum (`schedule = optimal`, benchmarks/search_quality.py --tight)
PROVEN = [((8, 1, 2, 0.5), 70.0),  # the issue's V: search gave 72 before the serial scheme
          ((8, 0.5, 1, 0.5), 29.5),  # equal costs: 33.5 before (CP-SAT's presolve lost the hint)
          ((4, 1, 2, 0.5), 40.0)]


def _spec(m, F, B, W):
    [spec] = schedc.parse(V.format(m=m, F=F, B=B, W=W), "t.sched")
    return spec


@pytest.mark.parametrize("case,optimum", PROVEN)
def test_search_is_within_two_percent_of_the_proven_optimum_under_a_tight_limit(case, optimum):
    pytest.importorskip("ortools", reason="the default search ends with CP-SAT when it is installed")
    found = compile_spec(_spec(*case)).search  # the default budget
    assert found.makespan <= optimum * 1.02 + 1e-9


def test_the_heuristic_alone_comes_within_ten_percent_on_the_issues_v():
    """Without the solver: the race of the active and serial climbs (local_search), at a quarter of
    the default budget (what `search` gives it before CP-SAT), was 86.5 with the active one alone."""
    from dataclasses import replace

    from schedc.search.local_search import search_order
    found = search_order(replace(_spec(8, 1, 2, 0.5), search_time=1.25))
    assert found.makespan <= 70 * 1.10  # 75 today; CP-SAT takes it from there to 70


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 4), st.integers(2, 6), st.sampled_from([2.0, 2.5, 3.0, None]),
       st.integers(0, 10_000), st.sampled_from(MODES))
def test_serial_scheme_gives_back_any_plan_from_its_start_times(ranks, m, limit, seed, mode):
    [spec] = schedc.parse(f"pipeline t {{ ranks = {ranks}  microbatches = {m}  placement = v  schedule = search "
                          f"cost {{ F = 1  B = 2  W = 0.5  comm = 0.1 }}  memory {{ activation = 0.5 "
                          f"{'' if limit is None else f'limit = {limit}'} }} }}", "t.sched")
    prob = build_problem(spec)
    rng = random.Random(seed)
    plan = list_schedule(prob, [rng.random() for _ in range(prob.n)], mode)
    if plan is None:  # a deadlock of the plain mode
        return
    again = [list_schedule(prob, start_times(prob, plan.rows), serial_mode, serial=True)
             for serial_mode in (PLAIN, BANKER)]
    assert again[0] is not None and again[0].makespan <= plan.makespan + 1e-9
    assert again[0].rows == plan.rows
