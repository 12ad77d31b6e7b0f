"""A planted fault of each kind is caught by the verifier, named, and located."""

import pytest

import schedc
from schedc.errors import SchedError
from schedc.ir import Instr, OpKind, Plan
from schedc.check import verify_order, verify_plan

from helpers import make_spec, run

HEADER = "pipeline p {{\n  ranks = 2\n  microbatches = 2\n{extra}  order {{\n{rows}  }}\n}}\n"
GOOD = ["rank 0: F0.0 F0.1 B0.0 B0.1", "rank 1: F1.0 B1.0 F1.1 B1.1"]


def compile_text(rows, extra=""):
    text = HEADER.format(rows="".join(f"    {r}\n" for r in rows), extra=extra)
    [spec] = schedc.parse(text, "t.sched")
    return schedc.compile(spec)


def error_of(rows, extra=""):
    with pytest.raises(SchedError) as info:
        compile_text(rows, extra)
    return info.value.diagnostics[0]


def test_good_order_compiles():
    assert compile_text(GOOD).plan.ranks[0][0] == Instr.compute(OpKind.F, 0, 0, 0)


def test_missing_op_is_reported_on_its_rank():
    d = error_of(["rank 0: F0.0 F0.1 B0.0 B0.1", "rank 1: F1.0 B1.0 F1.1"])
    assert "B1.1 never runs" in d.message and d.span.line == 6


def test_repeated_op_is_reported_at_the_second_copy():
    d = error_of(["rank 0: F0.0 F0.1 B0.0 B0.1 F0.1", "rank 1: F1.0 B1.0 F1.1 B1.1"])
    assert "F0.1 runs twice" in d.message and (d.span.line, d.span.col) == (5, 33)
    assert d.notes[0].span.col == 18


def test_op_on_the_wrong_rank():
    d = error_of(["rank 0: F0.0 F0.1 B0.0 B0.1 F1.1", "rank 1: F1.0 B1.0 B1.1"])
    assert "F1.1 is on rank 0, but stage 1 lives on rank 1" in d.message


def test_broken_local_dependency_is_a_deadlock_cycle():
    d = error_of(["rank 0: F0.0 F0.1 B0.0 B0.1", "rank 1: B1.0 F1.0 F1.1 B1.1"])
    assert d.message.startswith("deadlock") and "rank 1" in d.message
    assert (d.span.line, d.span.col) == (6, 18) and ">F1.0<" in d.detail


def test_cross_rank_deadlock_names_both_ranks():
    # rank 0 waits for B0.0's gradient before sending F0.1; rank 1 needs F1.1 before B1.0
    d = error_of(["rank 0: F0.0 B0.0 F0.1 B0.1", "rank 1: F1.0 F1.1 B1.0 B1.1"])
    assert d.message.startswith("deadlock") and "[0, 1]" in d.message


def test_memory_over_the_limit_is_reported_where_it_happens():
    d = error_of(GOOD, extra="  memory { limit = 1 }\n")
    assert "holds 2 activations" in d.message and (d.span.line, d.span.col) == (6, 18)


def test_overlap_of_dependent_ops_is_refused():
    d = error_of(["rank 0: F0.0 F0.1 B0.0 B0.1", "rank 1: F1.0 B1.0 F1.1&B1.1"])
    assert "overlaps two ops of the same microbatch" in d.message


def _plan_problems(mutate):
    compiled, _ = run(make_spec("1f1b", 3, 4))
    rows = [list(r) for r in compiled.plan.ranks]
    mutate(rows)
    return verify_plan(compiled.spec, compiled.dag, Plan(tuple(tuple(r) for r in rows)))


def test_lowered_plans_of_every_family_verify():
    from schedc.lang.spec import FAMILIES
    for family in FAMILIES:
        compiled, _ = run(make_spec(family, 4, 8, FB=2.5))
        assert verify_plan(compiled.spec, compiled.dag, compiled.plan) == []


def test_missing_receive_is_caught():
    def drop_recv(rows):
        rows[1].remove(Instr(OpKind.RECV_F, 0, 1, 2, 0))
    problems = _plan_problems(drop_recv)
    assert any("SEND_F0.2@1 on rank 0 has no matching RECV_F1.2@0" in p.message for p in problems)


def test_swapped_channel_order_is_caught():
    def swap(rows):
        a, b = rows[0].index(Instr(OpKind.SEND_F, 0, 0, 0, 1)), rows[0].index(Instr(OpKind.SEND_F, 0, 0, 1, 1))
        rows[0][a], rows[0][b] = rows[0][b], rows[0][a]
    problems = _plan_problems(swap)
    assert any("both ends of a channel must keep one order" in p.message or "must come after" in p.message
               for p in problems)


def test_send_before_its_producer_is_caught():
    def early(rows):
        send = Instr(OpKind.SEND_F, 0, 0, 1, 1)
        rows[0].remove(send)
        rows[0].insert(0, send)
    problems = _plan_problems(early)
    assert any("SEND_F0.1@1 must come after F0.1" in p.message for p in problems)


def test_wrong_peer_is_caught():
    def wrong(rows):
        i = rows[0].index(Instr(OpKind.SEND_F, 0, 0, 0, 1))
        rows[0][i] = Instr(OpKind.SEND_F, 0, 0, 0, 2)
    problems = _plan_problems(wrong)
    assert any("names peer 2, but the other end lives on rank 1" in p.message for p in problems)


def test_receive_after_its_consumer_is_caught():
    def late(rows):
        recv = Instr(OpKind.RECV_F, 0, 1, 0, 0)
        rows[1].remove(recv)
        rows[1].append(recv)
    problems = _plan_problems(late)
    assert any("needs RECV_F1.0@0 before it" in p.message for p in problems)


def test_communication_deadlock_is_a_cycle():
    def cross(rows):  # rank 1 waits for the gradient from rank 2 before receiving its own input
        recv_b = Instr(OpKind.RECV_B, 0, 1, 0, 2)
        rows[1].remove(recv_b)
        rows[1].insert(0, recv_b)
    [problem] = _plan_problems(cross)
    assert problem.check == "deadlock" and "ranks involved: [1, 2]" in problem.message
    assert "RECV_B1.0@2 (rank 1) waits for SEND_B2.0@1 (rank 2)" in problem.message


def test_grad_sum_is_required_in_bidirectional_plans():
    compiled, _ = run(make_spec("dualpipe", 4, 8, FB=3))
    rows = [list(r) for r in compiled.plan.ranks]
    rows[2].pop()  # drop its GRAD_SUM
    problems = verify_plan(compiled.spec, compiled.dag, Plan(tuple(tuple(r) for r in rows)))
    assert any("rank 2 must end with one GRAD_SUM@1" in p.message for p in problems)


def test_verify_order_accepts_every_family_order():
    from schedc.passes import fuse_overlap
    from schedc.lang.spec import FAMILIES
    for family in FAMILIES:
        compiled, _ = run(make_spec(family, 4, 8, FB=2.5))
        rows = fuse_overlap(compiled.order, compiled.spec.overlap)
        assert verify_order(compiled.spec, compiled.dag, rows) == []
