"""Invariants over random sizes: every family verifies, does each op once, conserves work."""

from hypothesis import given, settings
from hypothesis import strategies as st

from schedc.compiler import compile_spec
from schedc.errors import SchedError
from schedc.ir import OpKind
from schedc.check import verify_plan

from helpers import make_spec, run

FAMILIES = ["gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv", "dualpipe", "dualpipev"]
costs = st.tuples(st.sampled_from([0.5, 1, 2]), st.sampled_from([1, 2, 3]), st.sampled_from([0.5, 1]))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FAMILIES), st.integers(1, 6), st.integers(1, 16), costs)
def test_every_fitting_family_verifies_and_conserves_work(family, ranks, microbatches, cost):
    F, B, W = cost
    spec = make_spec(family, ranks, microbatches, F, B, W)
    try:
        compiled, timeline = run(spec)
    except SchedError:
        return  # the family's constraints rule this size out (tested elsewhere)
    assert verify_plan(compiled.spec, compiled.dag, compiled.plan) == []
    # every rank does the same total work: each of its stage replicas, every microbatch once
    per_rank = spec.microbatches_per_direction * spec.chunks * spec.directions * (F + B)
    assert [r.busy for r in timeline.ranks] == [per_rank] * ranks
    assert all(r.idle >= -1e-9 for r in timeline.ranks)
    # nobody beats the wait of the last rank for its first input on a one-direction pipeline
    if spec.directions == 1 and spec.placement != "v" and ranks > 1:
        assert timeline.bubble >= (ranks - 1) * F - 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4).map(lambda h: 2 * h), st.integers(1, 4))
def test_dualpipe_peak_is_p_plus_one_for_any_size(ranks, extra):
    microbatches = 2 * ranks + 2 * extra
    _c, timeline = run(make_spec("dualpipe", ranks, microbatches, FB=3))
    assert {r.peak_activations for r in timeline.ranks} == {ranks + 1}


def test_compute_ops_appear_once_each_in_every_family():
    for family in FAMILIES:
        compiled, _ = run(make_spec(family, 4, 8, FB=3))
        seen = [op for row in compiled.plan.ranks for x in row
                for op in ((x,) if x.kind is not OpKind.OVERLAP else x.parts) if op.is_compute]
        assert len(seen) == len(set(seen))


def test_auto_is_never_slower_than_the_shortest_fitting_family_for_the_same_model():
    from dataclasses import replace

    from schedc.compiler import with_family
    spec = make_spec("1f1b", 4, 8, FB=2)
    best = compile_spec(replace(spec, schedule="auto"))
    makespans = {}
    for family in FAMILIES:
        try:
            makespans[family] = run(with_family(spec, family))[1].makespan
        except SchedError:
            pass
    assert run(best.spec)[1].makespan <= min(makespans.values())  # the search may beat them all
    if best.spec.schedule in makespans:
        assert makespans[best.spec.schedule] == min(makespans.values())


def test_same_model_scaling_keeps_total_work():
    from schedc.compiler import with_family
    spec = make_spec("1f1b", 4, 8)
    for family in ("zbv", "dualpipev", "interleaved"):
        other = with_family(spec, family)
        work = sum(c.forward + c.backward for c in other.costs) * other.directions
        assert work == sum(c.forward + c.backward for c in spec.costs)
