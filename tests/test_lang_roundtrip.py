"""parse(format(x)) == x: instruction tokens, plan text, pasted-back orders, JSON."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import schedc
from schedc.ir import (COMPUTE, Instr, OpKind, Plan, format_instr, parse_instr_token,
                       plan_from_json, plan_to_json)
from schedc.lang.spec import FAMILIES, spec_to_json
from schedc.lang.syntax import parse_rank_lines
from schedc.lang.writer import format_pipeline

from helpers import make_spec, run

SIZES = {"gpipe": (4, 8), "1f1b": (4, 8), "interleaved": (4, 8), "zb-h1": (4, 8), "zb-h2": (4, 8),
         "zbv": (4, 8), "dualpipe": (4, 8), "dualpipev": (4, 8)}

compute = st.builds(Instr.compute, st.sampled_from(sorted(COMPUTE, key=lambda k: k.value)),
                    st.integers(0, 1), st.integers(0, 99), st.integers(0, 999))
comm = st.builds(lambda k, d, s, j, q: Instr(k, d, s, j, q),
                 st.sampled_from([OpKind.SEND_F, OpKind.RECV_F, OpKind.SEND_B, OpKind.RECV_B]),
                 st.integers(0, 1), st.integers(0, 99), st.integers(0, 999), st.integers(0, 63))
overlap = st.builds(lambda f, b: Instr.overlap(f.with_kind(OpKind.F), b.with_kind(OpKind.B)), compute, compute)
grad_sum = st.builds(lambda q: Instr(OpKind.GRAD_SUM, peer=q), st.integers(0, 63))
instrs = st.one_of(compute, comm, overlap, grad_sum)


@given(instrs)
def test_instruction_token_round_trips(instr):
    assert parse_instr_token(format_instr(instr)) == instr


@given(st.lists(st.lists(instrs, max_size=6), min_size=1, max_size=4))
def test_plan_text_round_trips_through_the_grammar(rows):
    plan = Plan(tuple(tuple(r) for r in rows))
    lines = parse_rank_lines(schedc.format_plan_text(plan))
    assert tuple(tuple(item.instr for item in line.items) for line in lines) == plan.ranks


@pytest.mark.parametrize("family", FAMILIES)
def test_printed_plan_pasted_back_compiles_to_itself(family):
    compiled, _ = run(make_spec(family, *SIZES[family], FB=2.5))
    text = format_pipeline(compiled.spec, compiled.plan.ranks)
    [spec] = schedc.parse(text, "pasted.sched")
    assert schedc.compile(spec).plan == compiled.plan


@pytest.mark.parametrize("family", FAMILIES)
def test_compute_only_order_pasted_back_lowers_to_the_same_plan(family):
    compiled, timeline = run(make_spec(family, *SIZES[family], FB=2.5))
    rows = tuple(tuple(x for x in row if x.is_compute) for row in compiled.plan.ranks)
    [spec] = schedc.parse(format_pipeline(compiled.spec, rows), "pasted.sched")
    again = schedc.compile(spec)
    assert again.plan == compiled.plan
    assert schedc.simulate(again).makespan == timeline.makespan


@pytest.mark.parametrize("family", FAMILIES)
def test_plan_json_round_trips(family):
    compiled, _ = run(make_spec(family, *SIZES[family]))
    obj = json.loads(json.dumps(plan_to_json(compiled.plan, spec_to_json(compiled.spec))))
    assert obj["version"] == 1 and obj["spec"]["ranks"] == 4
    assert plan_from_json(obj) == compiled.plan


def test_json_instructions_carry_the_documented_keys():
    compiled, _ = run(make_spec("dualpipe", 4, 8, FB=2.5))
    obj = plan_to_json(compiled.plan, spec_to_json(compiled.spec))
    ops = [i for r in obj["ranks"] for i in r["instructions"]]
    f = next(i for i in ops if i["op"] == "F")
    assert set(f) == {"op", "stage", "microbatch", "direction"}
    assert {i["direction"] for i in ops if "direction" in i} == {0, 1}
    pair = next(i for i in ops if i["op"] == "OVERLAP")
    assert [p["op"] for p in pair["parts"]] == ["F", "B"]
    assert all("peer" in i for i in ops if i["op"].startswith(("SEND", "RECV")))


@pytest.mark.parametrize("family", FAMILIES)
def test_written_spec_parses_back_to_the_same_spec(family):
    spec = make_spec(family, *SIZES[family], FB=2.5)
    [again] = schedc.parse(format_pipeline(spec), "spec.sched")
    assert again == spec


@pytest.mark.parametrize("name", ["moe_chunk", "moe_link"])
def test_a_chunk_and_a_link_are_written_back_as_written(name):
    from pathlib import Path
    [spec] = schedc.load(Path(__file__).parent.parent / "examples" / f"{name}.sched")
    text = format_pipeline(spec)
    assert "chunk { layers = 4  F { attention = 4.1" in text and "F = " not in text
    assert ("link { bandwidth = 50" in text) == (name == "moe_link")
    [again] = schedc.parse(text, "again.sched")
    assert again == spec and again.link == spec.link
