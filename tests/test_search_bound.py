"""The lower bound's fast rank-work part equals its slow obvious definition (every head x every
tail x every op, the version the bound had before issue 24), and the corners of the op budget
bound quickly enough to be tested at all (their timing targets are in benchmarks/corners.py)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedc
from schedc.dag import build_dag
from schedc.search.bound import least_time, lower_bound, smallest_limit

FAMILY_FILES = {
    "1f1b": "", "gpipe": "", "zb-h1": "", "interleaved": "chunks = 3", "zbv": "", "dualpipe": "",
    "dualpipev": "", "search": "placement = v",
}


def _source(family: str, ranks: int, m: int, comm: float, heavy: int, limit: str, overlap: bool) -> str:
    if family in ("dualpipe", "dualpipev"):
        m = max(m, 2 * ranks) + max(m, 2 * ranks) % 2
    fb = "F&B = 2.5" if overlap else ""
    return (f"pipeline p {{ ranks = {ranks} microbatches = {m} schedule = {family} "
            f"{FAMILY_FILES[family]} cost {{ F = 1 B = 2 W = 0.5 comm = {comm:g} {fb} "
            f"stage {heavy % ranks} {{ F = 1.7 B = 2.9 }} }} {limit} }}")


def _slow_rank_work(spec) -> float:
    """The definition, computed the obvious way: one microbatch's heads and tails by longest paths
    over the DAG, then every (head, tail) pair of every rank (O(n^3) per rank)."""
    dag = build_dag(spec)
    least = least_time(spec)  # the definition of an op's least time is shared; the rank work is not
    ops = [op for op in dag.preds if op.microbatch == 0]
    rank_of = {op: spec.rank_of(op.direction, op.stage) for op in ops}

    def delay(q, op):
        return spec.cost(q.stage).comm if rank_of[q] != rank_of[op] else 0.0

    head, tail, succs = {}, {}, {op: [] for op in ops}
    for op in ops:
        for q in dag.predecessors(op):
            succs[q].append(op)

    def head_of(op):
        if op not in head:
            head[op] = max((head_of(q) + least(q) + delay(q, op) for q in dag.predecessors(op)), default=0.0)
        return head[op]

    def tail_of(op):
        if op not in tail:
            tail[op] = max((delay(op, s) + least(s) + tail_of(s) for s in succs[op]), default=0.0)
        return tail[op]

    m, best = spec.microbatches_per_direction, 0.0
    for r in range(spec.ranks):
        mine = [op for op in ops if rank_of[op] == r]
        for h in {head_of(op) for op in mine}:
            for t in {tail_of(op) for op in mine}:
                work = m * sum(least(op) for op in mine if head_of(op) >= h and tail_of(op) >= t)
                if work:
                    best = max(best, h + work + t)
    return best


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from(sorted(FAMILY_FILES)), ranks=st.integers(2, 5), m=st.integers(1, 9),
       comm=st.sampled_from([0, 0.1, 0.7]), heavy=st.integers(0, 4),
       limit=st.sampled_from(["", "memory { activation = 1 limit = 6 }"]), overlap=st.booleans())
def test_bound_rank_work_equals_its_slow_definition(family, ranks, m, comm, heavy, limit, overlap):
    [spec] = schedc.parse(_source(family, ranks, m, comm, heavy, limit, overlap), "p.sched")
    bound = lower_bound(spec)
    [rank_work] = [v for name, v in bound.parts if "work" in name]
    assert math.isclose(rank_work, _slow_rank_work(spec), rel_tol=1e-12, abs_tol=1e-9)


def test_bound_of_many_chunks_and_many_ranks_is_quick():
    """The corners that took minutes (issue 24): interleaved with 1000 chunks, 1F1B on 1000 ranks.
    No timing assertion (benchmarks/corners.py has the figures): they must simply finish here."""
    for body in ("ranks = 4 microbatches = 8 schedule = interleaved chunks = 1000",
                 "ranks = 1000 microbatches = 32 schedule = 1f1b"):
        [spec] = schedc.parse(f"pipeline c {{ {body} cost {{ F = 1 B = 2 comm = 0.1 }} }}", "c.sched")
        bound = lower_bound(spec)
        assert bound.value > 0 and smallest_limit(spec).value > 0


def test_smallest_limit_with_recompute_counts_the_restore():
    """A recomputing stage holds `keeps` of its activation after F; the deepest stage's R
    restores the rest while the shallower stages still hold theirs."""
    body = ("ranks = 2 microbatches = 4 schedule = interleaved chunks = 2 {} cost {{ F = 1 B = 2 }} "
            "memory {{ activation = 1 limit = 10 }} recompute {{ full {{ cost = 1 keeps = 0.05 }} }}")
    [plain] = schedc.parse(f"pipeline p {{ {body.format('')} }}", "p.sched")
    assert smallest_limit(plain).value == 2  # two stages on a rank, each holding 1
    [dropping] = schedc.parse(f"pipeline p {{ {body.format('recompute = full')} }}", "p.sched")
    need = smallest_limit(dropping)
    assert math.isclose(need.value, 0.05 + 0.05 + 0.95) and "restored" in need.reason
