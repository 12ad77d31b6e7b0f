"""The overlap model (schedc.overlap): closed forms of the slowdown, DeepSeek's order, the exact
search against brute force over all lane orders, the invariants of the derived costs, the check
against a measured pair, and the pair's picture."""

from __future__ import annotations

import ast
import math
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedc.errors import SchedError
from schedc.overlap import Chunk, Part, check_chunk, check_measured, deepseek_order, derive_costs, evaluate_pair
from schedc.overlap.chunk import COMM, COMPUTE, build_problem
from schedc.overlap.fast import START, Tables, advance
from schedc.overlap.pair import sequential_order, simulate_lanes
from schedc.viz.pair import format_pair_svg

ROOT = Path(__file__).resolve().parent.parent
P = Part
V3_F = (P("attention", 4.1), P("dispatch", 6.7, True), P("mlp", 4.6), P("combine", 8.7, True))
V3_B = (P("combine", 5.8, True), P("mlp", 5.3), P("dispatch", 7.5, True), P("attention", 8.8))
V3_W = (P("mlp", 3.5), P("attention", 2.4))


def v3(layers: int = 4, share: float = 0.15) -> Chunk:
    return Chunk(layers, V3_F, V3_B, V3_W, share)


# ---- the oracle: every pair of lane orders -------------------------------------------------


def lane_orders(problem, lane: int) -> list[tuple[int, ...]]:
    """Every order of `lane`'s parts in which each part follows its same-lane predecessor."""
    ids = [i for i in range(len(problem.work)) if problem.lane[i] == lane]
    out: list[tuple[int, ...]] = []

    def extend(sequence: list[int], left: set[int]) -> None:
        if not left:
            out.append(tuple(sequence))
            return
        for i in sorted(left):
            before = problem.pred[i]
            if before >= 0 and problem.lane[before] == lane and before not in sequence:
                continue
            left.remove(i)
            extend(sequence + [i], left)
            left.add(i)

    extend([], set(ids))
    return out


def brute_force(chunk: Chunk) -> float:
    """The least makespan over all pairs of lane orders that do not deadlock."""
    problem = build_problem(chunk)
    best = math.inf
    for compute in lane_orders(problem, COMPUTE):
        for comm in lane_orders(problem, COMM):
            try:
                best = min(best, simulate_lanes(problem, compute, comm).makespan)
            except SchedError:
                continue
    return best


def run_fast(problem, compute, comm) -> float | None:
    """The search's evaluator (fast.advance) driven by fixed lane orders; None on deadlock."""
    tb = Tables(problem)
    queues = {COMPUTE: list(compute), COMM: list(comm)}
    outcome = advance(tb, START)
    while outcome[0] == "decide":
        _, lane, state = outcome
        part = queues[lane].pop(0)
        t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw = state
        if lane == COMPUTE:
            state = (t, fd, bd, wmask, wwork, part, problem.work[part], m, mrem, lastw)
        else:
            state = (t, fd, bd, wmask, wwork, c, crem, part, problem.work[part], lastw)
        outcome = advance(tb, state)
    return outcome[1] if outcome[0] == "done" else None


# ---- strategies ----------------------------------------------------------------------------

durations = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5, 7.25])
shares = st.sampled_from([0.0, 0.1, 0.15, 0.5, 0.9])


@st.composite
def chunks(draw, max_parts: int = 24, comm: bool = True):
    """A chunk: 1-4 forward and B parts a layer (random lanes), 0-2 W parts (named after a B part
    or not), at most `max_parts` parts in all."""
    layers = draw(st.integers(1, 3))
    nf, nb, nw = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 2))
    while layers * (nf + nb + nw) > max_parts and layers > 1:
        layers -= 1
    while nf + nb + nw > max_parts:
        nf, nb, nw = max(1, nf - 1), max(1, nb - 1), max(0, nw - 1)
    on_net = st.booleans() if comm else st.just(False)
    forward = tuple(P(f"f{i}", draw(durations), draw(on_net)) for i in range(nf))
    backward = tuple(P(f"b{i}", draw(durations), draw(on_net)) for i in range(nb))
    names = draw(st.lists(st.sampled_from([f"b{i}" for i in range(nb)] + ["x", "y"]), min_size=nw,
                          max_size=nw, unique=True))
    weight = tuple(P(n, draw(durations)) for n in names)
    return Chunk(layers, forward, backward, weight, draw(shares))


def tiny(chunk: Chunk) -> bool:
    problem = build_problem(chunk)
    lanes = [sum(1 for x in problem.lane if x == lane) for lane in (COMPUTE, COMM)]
    return math.factorial(lanes[0]) * math.factorial(lanes[1]) <= 2000


# ---- closed forms of the slowdown ----------------------------------------------------------


@pytest.mark.parametrize("work,comm,share", [(2, 10, 0.5), (6, 10, 0.5), (5, 10, 0.5), (3, 4, 0.15),
                                             (9, 4, 0.15), (2, 2, 0.0), (1, 100, 0.9)])
def test_slowdown_of_one_compute_part_beside_one_communication_part(work, comm, share):
    # both start at 0: compute at 1 - s while the communication runs, at 1 after it
    chunk = Chunk(1, (P("attention", work),), (P("combine", comm, True),), (), share)
    pair = evaluate_pair(chunk, ["F0.attention"], ["B0.combine"])
    end = work / (1 - share) if work / (1 - share) <= comm else work + share * comm
    ends = {s.label: s.end for s in pair.slices}
    assert ends["F0.attention"] == pytest.approx(end)
    assert ends["B0.combine"] == comm
    assert pair.makespan == pytest.approx(max(end, comm))
    assert pair.hidden_comm == pytest.approx(min(end, comm) / comm)


def test_slowdown_by_hand_on_two_phases():
    # F: a (compute 2), b (comm 3); B: x (comm 4), y (compute 1); s = 0.5. DeepSeek's order pairs
    # a with x: a runs at 0.5 over [0, 4]; then b with y: y at 0.5 over [4, 6], b over [4, 7].
    chunk = Chunk(1, (P("a", 2), P("b", 3, True)), (P("x", 4, True), P("y", 1)), (), 0.5)
    assert deepseek_order(chunk) == (("F0.a", "B0.y"), ("B0.x", "F0.b"))
    pair = evaluate_pair(chunk, *deepseek_order(chunk))
    assert {s.label: (s.start, s.end) for s in pair.slices} == {
        "F0.a": (0, 4), "B0.x": (0, 4), "B0.y": (4, 6), "F0.b": (4, 7)}
    assert pair.makespan == 7
    assert pair.hidden_comm == pytest.approx(6 / 7)
    assert derive_costs(chunk).FB == 7  # and nothing does better


def test_a_communication_part_slows_only_the_stretch_it_overlaps():
    # big (compute 6) beside lead (comm 2) from 0: 0.75 x 2 = 1.5 work by 2, then 4.5 at rate 1
    chunk = Chunk(1, (P("lead", 2, True), P("tail", 1)), (P("big", 6),), (), 0.25)
    pair = evaluate_pair(chunk, ["B0.big", "F0.tail"], ["F0.lead"])
    ends = {s.label: s.end for s in pair.slices}
    assert ends["B0.big"] == pytest.approx(2 + (6 - 0.75 * 2))
    assert ends["F0.tail"] == pytest.approx(ends["B0.big"] + 1)
    # big alone over [1, 2] (1 work), beside net (comm 4) over [2, 6] (3 work), then 2 at rate 1
    chunk = Chunk(1, (P("lead", 2), P("net", 4, True)), (P("big", 6),), (), 0.25)
    pair = evaluate_pair(chunk, ["B0.big", "F0.lead"], ["F0.net"])
    ends = {s.label: s.end for s in pair.slices}
    assert ends["B0.big"] == 6 and ends["F0.lead"] == 8 and ends["F0.net"] == 12
    pair = evaluate_pair(chunk, ["F0.lead", "B0.big"], ["F0.net"])
    ends = {s.label: s.end for s in pair.slices}
    assert ends["F0.net"] == 6
    assert ends["B0.big"] == pytest.approx(2 + 4 + (6 - 0.75 * 4))


# ---- DeepSeek's order ------------------------------------------------------------------------


def test_deepseek_order_is_figure_4_for_v3_parts():
    compute, comm = deepseek_order(v3())
    assert compute[:7] == ("F0.attention", "B3.mlp", "W3.mlp", "F0.mlp", "B3.attention", "W3.attention",
                           "F1.attention")
    assert comm[:5] == ("B3.combine", "F0.dispatch", "B3.dispatch", "F0.combine", "B2.combine")
    assert len(compute) == 4 * 6 and len(comm) == 4 * 4


def test_deepseek_order_hides_most_communication_on_a_one_to_one_chunk():
    d = derive_costs(v3())
    assert d.compute == pytest.approx(d.comm)  # 1:1
    assert d.deepseek.hidden_comm >= 0.80  # issue target; the model gives about 99%
    assert d.deepseek.hidden_comm > 0.98
    assert d.deepseek_optimal and d.proven  # and for these parts it is the best order


def test_v3_figures():
    d = derive_costs(v3())
    assert (d.F, d.B, d.W) == pytest.approx((96.4, 133.2, 23.6))
    assert d.FB == pytest.approx(132.85)
    assert d.FB < d.B  # the pair hides what a lone backward chunk leaves exposed (see Derived)


# ---- the exact search ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(chunks(max_parts=9))
def test_exact_search_agrees_with_brute_force(chunk):
    if not tiny(chunk):
        return
    d = derive_costs(chunk)
    assert d.proven
    assert d.FB == pytest.approx(brute_force(chunk), rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(chunks(max_parts=12))
def test_search_evaluator_matches_the_reference(chunk):
    problem = build_problem(chunk)
    orders = [sequential_order(problem)]
    d = derive_costs(chunk)
    index = problem.index()
    for pair in (d.best, d.deepseek):
        orders.append((tuple(index[x] for x in pair.compute), tuple(index[x] for x in pair.comm)))
    for compute_ids, comm_ids in orders:
        assert run_fast(problem, compute_ids, comm_ids) == simulate_lanes(problem, compute_ids, comm_ids).makespan
    # the best's orders, re-evaluated from their labels, give the best's makespan
    assert evaluate_pair(chunk, d.best.compute, d.best.comm).makespan == d.best.makespan


def test_search_is_deterministic_and_fast_on_fifty_parts():
    chunk = Chunk(5, V3_F, (P("combine", 5.8, True), P("mlp", 9.3), P("dispatch", 3.5, True),
                            P("attention", 8.8)), V3_W, 0.3)
    start = time.perf_counter()
    first = derive_costs(chunk)
    assert time.perf_counter() - start < 1.0
    assert derive_costs(chunk) == first


def test_unfinished_search_returns_a_valid_bound():
    chunk = Chunk(4, (P("a", 3.1), P("b", 2.2, True), P("c", 0.7), P("d", 5.3, True)),
                  (P("e", 4.4, True), P("f", 1.9, True), P("g", 6.1)), (P("w", 2.6), P("g", 1.3)), 0.6)
    d = derive_costs(chunk, budget_s=1e-5)  # one state
    assert d.lower_bound <= d.FB <= d.deepseek.makespan
    assert d.proven == (d.lower_bound == d.FB)


# ---- invariants of the derived costs -----------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(chunks())
def test_derived_costs_invariants(chunk):
    d = derive_costs(chunk, budget_s=0.05)
    problem = build_problem(chunk)
    tol = 1e-9 * max(1.0, d.F + d.B)
    b_chain = math.fsum(problem.work[i] for i in problem.backward)
    assert d.F + d.B == pytest.approx(d.compute + d.comm)
    assert max(d.F, b_chain, d.compute, d.comm, d.lower_bound) <= d.FB + tol
    assert d.FB <= d.F + d.B + tol  # never above the sequential pair
    assert d.FB <= simulate_lanes(problem, *sequential_order(problem)).makespan + tol
    assert d.FB <= d.deepseek.makespan + tol
    assert d.FB == d.best.makespan or d.comm == 0
    assert 0.0 <= d.hidden_comm <= 1.0
    if not chunk.weight:  # without W parts the lone backward is a chain: F&B >= B
        assert d.B <= d.FB + tol


@settings(max_examples=40, deadline=None)
@given(chunks(comm=False))
def test_without_communication_fb_is_exactly_f_plus_b(chunk):
    d = derive_costs(chunk)
    assert d.FB == d.F + d.B
    assert d.best.makespan == pytest.approx(d.F + d.B)
    assert d.hidden_comm == 0.0 and d.proven


def test_fb_lies_between_max_and_sum_at_share_zero_without_w_parts():
    chunk = Chunk(3, V3_F, V3_B, (), 0.0)
    d = derive_costs(chunk)
    assert max(d.F, d.B) <= d.FB <= d.F + d.B


# ---- values and errors -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk,message", [
    (Chunk(0, V3_F, V3_B), "layers"),
    (Chunk(1, (), V3_B), "at least one forward"),
    (Chunk(1, V3_F, V3_B, (), 1.0), "comm_share"),
    (Chunk(1, V3_F, V3_B, (), -0.1), "comm_share"),
    (Chunk(1, (P("a", -1),), V3_B), "duration"),
    (Chunk(1, (P("a", math.inf),), V3_B), "duration"),
    (Chunk(1, (P("a", 1), P("a", 2)), V3_B), "named twice"),
    (Chunk(1, (P("a.b", 1),), V3_B), "without dots"),
    (Chunk(1, V3_F, V3_B, (P("mlp", 1, True),)), "W parts are compute"),
])
def test_bad_chunks_are_refused(chunk, message):
    with pytest.raises(SchedError, match=message):
        check_chunk(chunk)
    with pytest.raises(SchedError, match=message):
        derive_costs(chunk)


def test_bad_orders_are_refused():
    chunk = Chunk(1, (P("a", 1), P("b", 1, True), P("c", 1)), (P("x", 1, True), P("y", 1)), ())
    with pytest.raises(SchedError, match="missing: F0.c"):
        evaluate_pair(chunk, ["F0.a", "B0.y"], ["F0.b", "B0.x"])
    with pytest.raises(SchedError, match="F0.c comes before F0.a"):
        evaluate_pair(replace(chunk, forward=(P("a", 1), P("c", 1), P("b", 1, True))),
                      ["F0.c", "F0.a", "B0.y"], ["F0.b", "B0.x"])
    with pytest.raises(SchedError, match="W0.y comes before B0.y"):
        evaluate_pair(replace(chunk, weight=(P("y", 1),)), ["F0.a", "F0.c", "W0.y", "B0.y"], ["F0.b", "B0.x"])
    with pytest.raises(SchedError, match="unknown"):
        evaluate_pair(chunk, ["F0.a", "F0.c", "B0.z"], ["F0.b", "B0.x"])
    # y waits for x, which the comm lane issues after b, which waits for a, behind y: deadlock
    chunk = Chunk(1, (P("a", 1), P("b", 1, True)), (P("x", 1, True), P("y", 1)), ())
    with pytest.raises(SchedError, match="deadlock"):
        evaluate_pair(chunk, ["B0.y", "F0.a"], ["F0.b", "B0.x"])


# ---- the check against a measured pair ----------------------------------------------------------


def test_check_measured_on_a_span_near_the_model():
    c = check_measured(v3(), 135.0)
    assert c.derived == pytest.approx(132.85) and c.derived_close
    assert c.sequential == pytest.approx(229.6) and c.lanes == pytest.approx(114.8)
    assert c.naive_off and c.passed
    far = check_measured(v3(), 229.0)
    assert not far.derived_close and not far.passed
    with pytest.raises(SchedError, match="must be > 0"):
        check_measured(v3(), 0.0)


# ---- the picture ---------------------------------------------------------------------------------


def test_pair_svg_draws_every_part_on_its_lane():
    chunk = Chunk(2, V3_F, (P("combine", 5.8, True), P("mlp", 9.3), P("dispatch", 3.5, True),
                            P("attention", 8.8)), V3_W, 0.0)
    d = derive_costs(chunk)
    svg = format_pair_svg(d, "a <test> pair")
    root = ET.fromstring(svg)
    cells = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "cell"]
    panels = 1 if (d.best.compute, d.best.comm) == (d.deepseek.compute, d.deepseek.comm) else 2
    assert len(cells) == panels * len(d.best.slices)
    first = {g.get("data-part"): (g.get("data-lane"), float(g.get("data-start"))) for g in cells[:len(d.best.slices)]}
    assert first == {s.label: (s.lane, pytest.approx(s.start)) for s in d.best.slices}
    assert "a &lt;test&gt; pair" in svg and "communication" in svg and "compute" in svg


# ---- the room's rules (tests/test_layout.py checks them for every room) ---------------------------


def test_viz_pair_reads_the_derived_value_without_importing_overlap():
    tree = ast.parse((ROOT / "schedc" / "viz" / "pair.py").read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in modules if "overlap" in m]
    init = ast.get_docstring(ast.parse((ROOT / "schedc" / "overlap" / "__init__.py").read_text(encoding="utf-8")))
    assert "\nMay import: errors\n" in init and "\nLibraries at module level: none\n" in init
