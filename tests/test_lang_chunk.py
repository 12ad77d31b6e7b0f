"""The `chunk { }` cost block: parsed, checked, derived through the overlap model, and used by
everything downstream (simulate, compare's exposed communication, `schedc overlap`)."""

import json

import pytest

import schedc
from schedc.cli import main
from schedc.overlap import Chunk, Part, derive_costs
from schedc.simulate import exposed_communication

V3 = """
pipeline moe {{
  ranks = 4  microbatches = 8  schedule = {schedule}
  cost {{
    chunk {{
      layers = 2
      F {{ attention = 4.1  dispatch = 6.7  mlp = 4.6  combine = 8.7 }}
      B {{ combine = 5.8  mlp = 5.3  dispatch = 7.5  attention = 8.8 }}
      W {{ mlp = 3.5  attention = 2.4 }}
      comm_share = 0.15
    }}
    comm = 0.5
  }}
}}
"""


def _spec(text):
    [spec] = schedc.parse(text, "moe.sched")
    return spec


def test_the_file_s_chunk_gives_the_overlap_model_s_figures():
    spec = _spec(V3.format(schedule="dualpipe"))
    part = lambda name, d, comm=False: Part(name, d, comm)  # noqa: E731
    chunk = Chunk(2, (part("attention", 4.1), part("dispatch", 6.7, True), part("mlp", 4.6),
                      part("combine", 8.7, True)),
                  (part("combine", 5.8, True), part("mlp", 5.3), part("dispatch", 7.5, True),
                   part("attention", 8.8)), (part("mlp", 3.5), part("attention", 2.4)), 0.15)
    derived = derive_costs(chunk)
    cost = spec.costs[0]
    assert (cost.forward, cost.backward, cost.weight) == pytest.approx((derived.F, derived.B, derived.W))
    assert cost.overlap_cost == pytest.approx(derived.FB)
    assert cost.comm == 0.5  # the pipeline transfer still typed beside the chunk
    assert cost.comm_forward == pytest.approx(2 * (6.7 + 8.7))
    assert cost.comm_backward == pytest.approx(2 * (5.8 + 7.5))
    assert all(c == cost for c in spec.costs)


def test_a_chunk_without_communication_is_exactly_its_typed_sums():
    chunked = _spec("""pipeline p { ranks = 4 microbatches = 8 schedule = dualpipe
      cost { chunk { layers = 3  F { a = 1  b = 2 }  B { b = 2  a = 1.5 }  W { b = 1 } } } }""")
    typed = _spec("""pipeline p { ranks = 4 microbatches = 8 schedule = dualpipe
      cost { F = 9  B = 13.5  W = 3 } }""")
    assert chunked.costs[0].overlap_cost == typed.costs[0].overlap_cost == 22.5
    a, b = (schedc.simulate(schedc.compile(s)) for s in (chunked, typed))
    assert a.makespan == b.makespan and a.bubble == b.bubble


def test_a_stage_s_own_chunk_overrides_the_block_s():
    spec = _spec("""pipeline p { ranks = 4 microbatches = 8
      cost { chunk { F { a = 1 } B { a = 2 } }  stage 3 { chunk { F { a = 5 } B { a = 6 } } } } }""")
    assert [c.forward for c in spec.costs] == [1, 1, 1, 5]


def test_exposed_communication_follows_the_pairs():
    one_f1b = schedc.compile(_spec(V3.format(schedule="1f1b")))
    dualpipe = schedc.compile(_spec(V3.format(schedule="dualpipe")))
    for total, exposed in exposed_communication(one_f1b.spec, one_f1b.plan):
        assert total > 0 and exposed == pytest.approx(total)  # 1F1B overlaps nothing
    pairs = exposed_communication(dualpipe.spec, dualpipe.plan)
    assert all(exposed < total for total, exposed in pairs)
    no_chunk = schedc.compile(schedc.load("examples/dualpipe.sched")[0])
    assert set(exposed_communication(no_chunk.spec, no_chunk.plan)) == {(0.0, 0.0)}


def test_compare_shows_the_exposed_column_only_for_chunked_files(capsys):
    assert main(["compare", "examples/moe_chunk.sched", "--schedules", "1f1b,dualpipe"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "exposed" in out[2] and "hidden" in out[2]
    assert out[3].split()[0] == "1f1b" and "0.0%" in out[3]
    assert main(["compare", "examples/1f1b.sched", "--schedules", "1f1b"]) == 0
    assert "exposed" not in capsys.readouterr().out


def test_overlap_command_prints_json_and_draws_the_pair(tmp_path, capsys):
    picture = tmp_path / "pair.svg"
    assert main(["overlap", "examples/moe_chunk.sched", "--json", "-o", str(picture)]) == 0
    data = json.loads(capsys.readouterr().out)
    [stage] = data["stages"]
    assert {"stage", "F", "B", "W", "F&B", "hidden_comm", "order"} <= set(stage)
    assert stage["stages"] == list(range(8)) and stage["hidden_comm"] >= 0.8
    assert stage["deepseek"]["optimal"] is True
    assert "<svg" in picture.read_text()


@pytest.mark.parametrize("argv,message", [
    (["overlap", "examples/1f1b.sched"], "has no `chunk { }`"),
    (["overlap", "examples/moe_chunk.sched", "--stage", "9"], "--stage 9"),
])
def test_overlap_command_refuses_what_it_cannot_derive(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
