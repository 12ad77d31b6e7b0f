"""The simulator reproduces the closed forms of docs/schedules.md over a grid of sizes/costs."""

import pytest

from schedc.schedules.closed_forms import closed_form

from helpers import make_spec, run

COSTS = [(1, 2, 1, None), (2, 3, 1, None), (1, 3, 1, None), (1, 4, 1, None), (0.5, 1, 0.5, None)]
SIZES = [(2, 4), (3, 6), (4, 8), (4, 12), (6, 12), (8, 16), (8, 24)]


def _check(family, p, m, F, B, W, FB=None, **kw):
    spec = make_spec(family, p, m, F, B, W, FB, **kw)
    _compiled, timeline = run(spec)
    form = closed_form(spec)
    assert form.bubble is not None
    if form.exact:
        assert timeline.bubble == pytest.approx(form.bubble)
        assert [r.idle for r in timeline.ranks] == pytest.approx([form.bubble] * p)
    else:
        assert timeline.bubble <= form.bubble + 1e-9
    return spec, timeline, form


@pytest.mark.parametrize("family", ["gpipe", "1f1b", "zb-h1", "zb-h2"])
@pytest.mark.parametrize("p,m", SIZES)
@pytest.mark.parametrize("F,B,W,FB", COSTS)
def test_linear_families_match_closed_form(family, p, m, F, B, W, FB):
    _spec, timeline, form = _check(family, p, m, F, B, W, FB)
    assert max(r.peak_activations for r in timeline.ranks) == form.peak


@pytest.mark.parametrize("p,m", [(2, 2), (3, 6), (4, 4), (4, 8), (4, 12), (8, 16)])
@pytest.mark.parametrize("v", [2, 3, 4])
@pytest.mark.parametrize("F,B,W,FB", COSTS[:3])
def test_interleaved_matches_closed_form(p, m, v, F, B, W, FB):
    _spec, timeline, form = _check("interleaved", p, m, F, B, W, FB, chunks=v)
    assert timeline.ranks[0].peak_activations == form.peak


def test_1f1b_peak_per_rank_is_min_p_minus_r_and_m():
    _c, timeline = run(make_spec("1f1b", 6, 4))
    assert [r.peak_activations for r in timeline.ranks] == [min(6 - r, 4) for r in range(6)]


@pytest.mark.parametrize("p,m", [(2, 4), (3, 6), (4, 8), (4, 13), (8, 16), (8, 20)])
def test_zbv_with_equal_costs_waits_only_for_the_first_input(p, m):
    _spec, timeline, _form = _check("zbv", p, m, 1, 2, 1)
    assert max(r.peak_activations for r in timeline.ranks) == 2 * p


@pytest.mark.parametrize("family", ["dualpipe", "dualpipev"])
@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 12), (6, 12), (6, 24), (8, 16), (8, 20), (8, 32)])
@pytest.mark.parametrize("F,B,W,FB", [(1, 2, 1, 3), (2, 4, 2, 6), (1, 2, 1, 2.5), (1, 3, 1, 4), (1, 2, 1, 2)])
def test_dualpipe_families_match_closed_form(family, p, m, F, B, W, FB):
    spec, timeline, form = _check(family, p, m, F, B, W, FB)
    assert {r.peak_activations for r in timeline.ranks} == {form.peak}


@pytest.mark.parametrize("family", ["1f1b", "zb-h1", "zb-h2", "gpipe"])
def test_no_linear_schedule_beats_the_first_input_wait(family):
    # The reference floors ZB-H2 at 0; under its own makespan the last rank waits (p-1)F.
    _c, timeline = run(make_spec(family, 4, 12, 1, 2, 1))
    assert timeline.bubble >= 3 * 1


def test_comm_cost_adds_one_transfer_per_hop_to_gpipe():
    # GPipe: (m+p-1)(F+B) + 2(p-1)comm: one forward and one backward chain of p-1 hops each.
    base = run(make_spec("gpipe", 4, 8))[1].makespan
    slow = run(make_spec("gpipe", 4, 8, comm=0.5))[1].makespan
    assert base == (8 + 3) * 3
    assert slow == pytest.approx(base + 2 * 3 * 0.5)


def test_comm_latency_slows_1f1b_steady_state():
    # With p in flight, 1F1B's period is max(F+B, round trip / p): 4 ranks, comm 0.5 -> 3.75.
    slow = run(make_spec("1f1b", 4, 8, comm=0.5))[1].makespan
    assert slow > run(make_spec("1f1b", 4, 8))[1].makespan + 3


def test_overlap_gain_shortens_dualpipe():
    plain = run(make_spec("dualpipe", 8, 20, FB=3))[1]
    faster = run(make_spec("dualpipe", 8, 20, FB=2))[1]
    assert faster.makespan < plain.makespan


def test_uneven_stage_costs_simulate():
    spec = make_spec("1f1b", 4, 8)
    from dataclasses import replace
    from schedc.lang.spec import StageCost
    heavy = replace(spec, costs=spec.costs[:3] + (StageCost(2, 4, 1),))
    _c, timeline = run(heavy)
    assert timeline.makespan > run(spec)[1].makespan
    assert closed_form(heavy).bubble is None
