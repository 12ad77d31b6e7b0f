"""Recomputation: the language, the R op through the flow, the memory model, the optimizer's choice.

Error messages with their places are pinned by the golden files tests/golden/errors/recompute_*.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_spec, run
from schedc.check.memory import peak_activations
from schedc.compiler import compile_spec
from schedc.compiler.recompute import candidates, recompute_bound
from schedc.errors import SchedError
from schedc.interop.torch_csv import write_torch_csv
from schedc.ir import Instr, OpKind, format_instr, instr_from_json, instr_to_json, parse_instr_token
from schedc.lang.recompute import RecomputeOption
from schedc.passes.recompute import folded
from schedc.lang.spec import FAMILIES, check_program
from schedc.lang.syntax import parse_program
from schedc.lang.writer import format_pipeline
from schedc.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
FULL = RecomputeOption("full", 1, 0.05)
ATTENTION = RecomputeOption("attention", 0.3, 0.6)


def with_recompute(spec, choice="full", options=(FULL, ATTENTION)):
    """`spec` with the same options on every stage and `choice` (one word, or one per stage)."""
    words = (choice,) * spec.num_stages if isinstance(choice, str) else tuple(choice)
    return replace(spec, recompute_options=(tuple(options),) * spec.num_stages, recompute=words)


def parse_one(text: str):
    return check_program(parse_program(text, "t.sched"))[0]


TEXT = """pipeline tight {
  ranks = 4
  microbatches = 8
  schedule = search
  recompute = auto
  memory { activation = 1  limit = 2 }
  recompute {
    full { cost = 1.0  keeps = 0.05 }
    attention { cost = 0.3  keeps = 0.6 }
    stage 3 { full { cost = 2  keeps = 0.1 }  recompute = none }
    stage 0 { recompute = attention }
  }
}
"""


def test_recompute_block_parses_with_defaults_and_stage_overrides():
    spec = parse_one(TEXT)
    assert spec.recompute == ("attention", "auto", "auto", "none")
    assert spec.recompute_options[0] == (FULL, ATTENTION)
    assert spec.recompute_options[3] == (RecomputeOption("full", 2, 0.1), ATTENTION)


def test_recompute_text_round_trips_through_the_canonical_writer():
    spec = parse_one(TEXT)
    again = parse_one(format_pipeline(spec))
    assert again == spec
    assert format_pipeline(again) == format_pipeline(spec)


def test_a_plan_with_r_round_trips_as_a_hand_written_order():
    spec = with_recompute(make_spec("1f1b", 3, 4))
    compiled = compile_spec(spec)
    text = format_pipeline(compiled.spec, compiled.plan.ranks)
    again = compile_spec(parse_one(text))
    assert again.plan == compiled.plan
    assert any(x.kind is OpKind.R for row in again.plan.ranks for x in row)


def test_r_token_round_trips_in_text_and_json():
    for op in (Instr.compute(OpKind.R, 0, 3, 7), Instr.compute(OpKind.R, 1, 0, 2)):
        assert parse_instr_token(format_instr(op)) == op
        assert instr_from_json(instr_to_json(op)) == op
    assert format_instr(Instr.compute(OpKind.R, 1, 0, 2)) == "R0.2r"


def test_defaults_are_unchanged_without_a_recompute_choice():
    """A file without a recompute block, and one with options but `recompute = none`, compile to
    exactly the plan and timeline they had: no R op, the same figures (the published ones)."""
    for family in FAMILIES:
        plain = make_spec(family, 4, 8)
        compiled, timeline = run(plain)
        assert plain.recompute == () and not any(op.kind is OpKind.R for op in plain.compute_ops())
        none = with_recompute(plain, "none")
        other, other_timeline = run(none)
        assert other.plan == compiled.plan
        assert other_timeline.makespan == timeline.makespan
        peaks = [r.peak_activations for r in timeline.ranks]
        assert [r.peak_activations for r in other_timeline.ranks] == peaks


def test_example_files_without_recompute_have_no_r_ops():
    for path in sorted((ROOT / "examples").glob("*.sched")):
        if path.name == "recompute.sched":
            continue
        for spec in check_program(parse_program(path.read_text(), str(path))):
            assert spec.recompute == (), path


def test_every_r_comes_right_before_the_backward_it_feeds_in_each_rank_list():
    for family in ("1f1b", "zb-h1", "zbv", "dualpipe", "dualpipev", "interleaved"):
        spec = with_recompute(make_spec(family, 4, 8, FB=2.5))
        plan = compile_spec(spec).plan
        for row in plan.ranks:
            compute = [x for x in row if x.is_compute]
            flat = [p for x in compute for p in (x.parts or (x,))]
            for i, op in enumerate(flat):
                if op.kind in (OpKind.B, OpKind.I):
                    assert op.with_kind(OpKind.R) in flat[:i], (family, op)
                if op.kind is OpKind.R:
                    assert op.with_kind(OpKind.F) in flat[:i]
            for i, x in enumerate(row):  # the gradient an R waits for is received before it
                if x.kind is OpKind.RECV_B:
                    r = Instr.compute(OpKind.R, x.direction, x.stage, x.microbatch)
                    assert r in row[i + 1:], (family, x)
            for i, x in enumerate(compute):  # R stands alone, and just before its backward's instruction
                if x.kind is OpKind.R:
                    nxt = compute[i + 1]
                    assert x.with_kind(OpKind.B) in (nxt.parts or (nxt,)) or \
                        x.with_kind(OpKind.I) in (nxt.parts or (nxt,)), (family, x, nxt)


@pytest.mark.parametrize("ranks,m,keeps", [(4, 8, 0.05), (3, 6, 0.25), (5, 5, 0.5)])
def test_1f1b_peak_with_full_recompute_matches_the_closed_form(ranks, m, keeps):
    """Rank r of 1F1B holds p - r forwards at its first backward, each `keeps`, then its R
    restores the rest of one: (p - r - 1) x keeps + 1 activations."""
    spec = with_recompute(make_spec("1f1b", ranks, m), "full", (RecomputeOption("full", 1, keeps),))
    _compiled, timeline = run(spec)
    for r in timeline.ranks:
        assert r.peak_activations == pytest.approx((ranks - r.rank - 1) * keeps + 1)


@pytest.mark.parametrize("cost", [0, 0.5, 1])
def test_1f1b_step_with_recompute_matches_the_closed_form(cost):
    """Each R waits for its gradient, as its backward does: 1F1B takes (m + p - 1)(F + B + R)."""
    spec = with_recompute(make_spec("1f1b", 4, 8), "full", (RecomputeOption("full", cost, 0.05),))
    _compiled, timeline = run(spec)
    assert timeline.makespan == pytest.approx((8 + 4 - 1) * (1 + 2 + cost))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_plan_takes_no_longer_than_its_folded_form_and_fits_its_memory(family):
    spec = with_recompute(make_spec(family, 4, 8), ("full", "attention") * 4)
    spec = replace(spec, recompute=spec.recompute[:spec.num_stages])
    real, real_timeline = run(spec)
    plain, plain_timeline = run(folded(spec))
    if not spec.split_backward:
        assert real_timeline.makespan == pytest.approx(plain_timeline.makespan)
    assert real_timeline.makespan <= plain_timeline.makespan + 1e-9
    for r in range(spec.ranks):
        compute = tuple(x for x in real.plan.ranks[r] if x.is_compute)
        assert peak_activations(spec, compute, r) <= plain_timeline.ranks[r].peak_activations + 1e-9
    assert recompute_bound(spec).value <= real_timeline.makespan + 1e-9


def _brute_force(spec) -> float:
    """The shortest step of any choice and any per-rank order (R anywhere after its F) that fits."""
    best = float("inf")
    for choice in itertools.product(("none", "full"), repeat=spec.num_stages):
        concrete = replace(spec, recompute=choice, schedule="manual")
        per_rank = []
        for r in range(spec.ranks):
            ops = [op for op in concrete.compute_ops() if concrete.rank_of(op.direction, op.stage) == r]
            per_rank.append([p for p in itertools.permutations(ops) if _local_order_ok(p)])
        for rows in itertools.product(*per_rank):
            try:
                compiled = compile_spec(replace(concrete, order=tuple(rows)))
            except SchedError:
                continue
            best = min(best, simulate(compiled.spec, compiled.dag, compiled.plan).makespan)
    return best


def _local_order_ok(row) -> bool:
    seen = set()
    for op in row:
        need = {OpKind.R: OpKind.F, OpKind.B: OpKind.R}.get(op.kind)
        if op.kind is OpKind.B and op.with_kind(OpKind.R) not in row:
            need = OpKind.F
        if need is not None and op.with_kind(need) not in seen:
            return False
        seen.add(op)
    return True


@pytest.mark.parametrize("limit,costs", [(1.2, (1, 2, 0.5)), (1.5, (1, 1, 1)), (2, (2, 1, 0.2))])
def test_optimal_agrees_with_brute_force_over_choices_and_orders(limit, costs):
    pytest.importorskip("ortools")
    f, b, r = costs
    base = replace(make_spec("1f1b", 2, 2, F=f, B=b), memory_limit=limit, activations=(1, 1))
    spec = with_recompute(base, "auto", (RecomputeOption("full", r, 0.1),))
    spec = replace(spec, schedule="optimal", split_backward=False, overlap=False, search_time=10)
    compiled, timeline = run(spec)
    assert "proven optimal over every recompute choice" in compiled.search.found_by
    assert timeline.makespan == pytest.approx(_brute_force(spec))


def test_search_with_auto_beats_search_without_and_the_families_with_full_recompute():
    """The benchmark's first pipeline (benchmarks/recompute.py), with a short budget."""
    base = replace(make_spec("zb-h1", 4, 8, limit=2), schedule="search", overlap=False, search_time=1)
    auto = run(with_recompute(base, "auto"))[1].makespan
    without = run(base)[1].makespan
    families = []
    for family in ("gpipe", "1f1b", "zb-h1", "zb-h2"):
        try:
            families.append(run(with_recompute(make_spec(family, 4, 8, limit=2), "full"))[1].makespan)
        except SchedError:
            pass
    assert auto < without - 1e-9 and auto < min(families) - 1e-9


def test_auto_on_a_family_takes_the_cheapest_choice_that_fits():
    spec = with_recompute(make_spec("1f1b", 4, 8, limit=2), "auto")
    compiled, timeline = run(spec)
    assert max(r.peak_activations for r in timeline.ranks) <= 2 + 1e-9
    for choice in candidates(spec):  # none of the choices that fit is faster
        try:
            other = run(replace(spec, recompute=choice))[1].makespan
        except SchedError:
            continue
        assert timeline.makespan <= other + 1e-9
    roomy = run(with_recompute(make_spec("1f1b", 4, 8), "auto"))[0]
    assert set(roomy.spec.recompute) == {"none"}  # recompute only costs time where memory allows


def test_export_to_torch_csv_refuses_a_plan_with_r():
    spec = with_recompute(make_spec("1f1b", 2, 2))
    compiled = compile_spec(spec)
    with pytest.raises(SchedError, match="no recompute action"):
        write_torch_csv(compiled.spec, compiled.plan)
    plain = compile_spec(make_spec("1f1b", 2, 2))
    assert "R" not in write_torch_csv(plain.spec, plain.plan)


def test_memory_check_counts_keeps_and_the_restore():
    spec = replace(with_recompute(make_spec("gpipe", 1, 3)), activations=(2,))
    row = tuple(Instr.compute(k, 0, 0, j) for k, j in
                [(OpKind.F, 0), (OpKind.F, 1), (OpKind.F, 2), (OpKind.R, 0), (OpKind.B, 0),
                 (OpKind.R, 1), (OpKind.B, 1), (OpKind.R, 2), (OpKind.B, 2)])
    assert peak_activations(spec, row, 0) == pytest.approx(3 * 0.1 + 1.9)  # all kept + one restore


def test_example_file_compiles_and_chooses_recompute():
    specs = check_program(parse_program((ROOT / "examples" / "recompute.sched").read_text(), "x"))
    for spec in specs:
        compiled, timeline = run(replace(spec, search_time=min(spec.search_time, 1)))
        assert max(r.peak_activations for r in timeline.ranks) <= spec.memory_limit + 1e-9
        assert any(c != "none" for c in compiled.spec.recompute)


def _partition_problem(recompute, limit=None):
    from partition_helpers import model_of
    from schedc.lang.layers import Devices
    from schedc.partition.problem import PartitionProblem, family_spec

    spec = with_recompute(family_spec("1f1b", 3, 6), recompute)
    forwards = [1, 3, 2, 2, 1, 4, 2, 1, 3]
    return PartitionProblem(model_of(forwards, [1] * 9, [0] * 9), spec, Devices((1.0,) * 3, (limit,) * 3))


def test_partitioner_retimes_plans_with_r_as_the_simulator_does():
    from partition_helpers import all_bounds
    from schedc.partition.best_split import Evaluator
    from schedc.partition.problem import split_spec

    problem = _partition_problem("full")
    ev = Evaluator(problem)
    assert any(x.kind is OpKind.R for row in ev.compiled.plan.ranks for x in row)
    for bounds in list(all_bounds(9, 3))[::3]:
        spec = replace(split_spec(problem, bounds), recompute=ev.compiled.spec.recompute)
        timeline = simulate(spec, ev.compiled.dag, ev.compiled.plan)
        got = ev.evaluate(bounds)
        assert got.makespan == pytest.approx(timeline.makespan)
        assert list(got.memory) == pytest.approx([r.peak_activations for r in timeline.ranks])


def test_partitioner_with_auto_chooses_recompute_where_the_limit_needs_it():
    from schedc.partition.best_split import choose_split

    roomy = choose_split(_partition_problem("auto"), 2000).best
    assert roomy.makespan == pytest.approx(choose_split(_partition_problem("none"), 2000).best.makespan)
    with pytest.raises(SchedError, match="smallest any split reaches"):
        choose_split(_partition_problem("none", limit=4), 2000)
    tight = choose_split(_partition_problem("auto", limit=4), 2000).best
    assert tight.fits and max(tight.memory) <= 4 + 1e-9
    assert tight.makespan > roomy.makespan  # recompute took time to fit


NAMES = ("full", "attention", "mlp")
numbers = st.integers(0, 40).map(lambda k: k / 20)  # 0, 0.05, ..., 2
fractions = st.integers(0, 19).map(lambda k: k / 20)  # 0 .. 0.95


@st.composite
def recompute_specs(draw):
    spec = make_spec(draw(st.sampled_from(("1f1b", "zb-h1", "zbv"))), draw(st.integers(1, 4)), 4)
    base = tuple(RecomputeOption(n, draw(numbers), draw(fractions))
                 for n in draw(st.lists(st.sampled_from(NAMES[:2]), min_size=1, max_size=2, unique=True)))
    options, choices = [], []
    for _stage in range(spec.num_stages):
        own = {o.name: o for o in base}
        if draw(st.booleans()):  # a stage redefines an option or adds the third
            name = draw(st.sampled_from(NAMES))
            own[name] = RecomputeOption(name, draw(numbers), draw(fractions))
        options.append(tuple(own.values()))
        choices.append(draw(st.sampled_from(("none", "auto") + tuple(own))))
    return replace(spec, recompute_options=tuple(options), recompute=tuple(choices))


@given(recompute_specs())
@settings(max_examples=60, deadline=None)
def test_any_recompute_setting_round_trips_through_the_text_form(spec):
    again = parse_one(format_pipeline(spec))
    assert again.recompute == spec.recompute
    assert again.recompute_options == spec.recompute_options
    assert format_pipeline(again) == format_pipeline(spec)
