"""The communication lane per rank (overlap/lanes.py, simulate.py): transfers on a link.

Without a link nothing changes (the delay model's figures, exactly); zero-length transfers give the
delay model's timeline; the hand-computed cases below pin serialization on a lane, first-come
first-served across the two directions, the compute slowdown beside a transfer (comm_share), and
the time compute waited on transfers (the exposed communication of `compare`).
"""

import json
from pathlib import Path

import pytest

import schedc
from schedc.cli import main
from schedc.compiler import with_family
from schedc.lang.spec import FAMILIES
from schedc.lang.writer import format_pipeline
from schedc.overlap.lanes import finish_time
from schedc.schedules.closed_forms import closed_form
from schedc.viz.timeline import Panel, render_timeline_svg

ROOT = Path(__file__).parent.parent
SIZES = {"dualpipe": (4, 10)}  # every family fits 4 x 8; DualPipe as well at 4 x 10


def timeline_of(body: str):
    [spec] = schedc.parse(f"pipeline p {{ {body} }}", "lanes.sched")
    compiled = schedc.compile(spec)
    return compiled, schedc.simulate(compiled)


def figures(timeline):
    return [(s.rank, str(s.instr), s.start, s.end) for s in timeline.slots], timeline.makespan


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "examples").glob("*.sched")
                                        if "link {" not in p.read_text()))
def test_a_file_without_a_link_has_no_lane(path):
    for spec in schedc.load(ROOT / "examples" / path):
        if spec.schedule in ("search", "optimal", "auto"):
            continue
        assert spec.link is None
        compiled = schedc.compile(spec)
        timeline = schedc.simulate(compiled)
        assert not timeline.linked and timeline.transfers == ()
        assert all(r.lane_busy == r.lane_exposed == 0 for r in timeline.ranks)
        assert all("lane_busy" not in r for r in timeline.to_json()["ranks"])
        assert "link" not in json.dumps(schedc.lang.spec.spec_to_json(spec))


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_length_transfers_give_the_delay_models_timeline(family):
    ranks, mbs = SIZES.get(family, (4, 8))
    body = f"ranks = {ranks} microbatches = {mbs} schedule = {family} cost {{ F = 1 B = 2 W = 1"
    _, plain = timeline_of(body + " }")
    compiled, linked = timeline_of(body + " link { bandwidth = 1 } }")
    assert linked.linked and len(linked.transfers) > 0
    assert figures(linked) == figures(plain)
    form = closed_form(compiled.spec)
    if form.exact:
        assert linked.bubble == pytest.approx(form.bubble)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lane_never_beats_the_pure_delay_of_the_same_length(family):
    ranks, mbs = SIZES.get(family, (4, 8))
    body = f"ranks = {ranks} microbatches = {mbs} schedule = {family} cost {{ F = 1 B = 2 W = 1"
    _, delay = timeline_of(body + " comm = 0.75 }")
    _, lane = timeline_of(body + " link { bandwidth = 4 latency = 0.25 } activation_bytes = 2 }")
    assert lane.makespan >= delay.makespan - 1e-9
    delays = {s.instr: s.start for s in delay.slots}
    assert all(s.start >= delays[s.instr] - 1e-9 for s in lane.slots)


def test_forward_transfers_serialize_on_the_lane():
    # GPipe, 2 ranks x 3, F = 1, B = 2, each transfer 2 long. Rank 0's forwards end at 1, 2, 3;
    # their transfers queue on the lane: [1, 3], [3, 5], [5, 7], so rank 1 runs F at 3, 5, 7 (not
    # 3, 4, 5 as with a pure delay of 2). Its backwards run 8-14 and send at 10, 12, 14 ([10, 12],
    # [12, 14], [14, 16]); rank 0's backwards follow at 12, 14, 16: makespan 18 (a delay: 16).
    _, t = timeline_of("ranks = 2 microbatches = 3 schedule = gpipe "
                       "cost { F = 1 B = 2 link { bandwidth = 1 latency = 2 } }")
    starts = {str(s.instr): s.start for s in t.slots}
    assert [starts[f"F1.{j}"] for j in range(3)] == [3, 5, 7]
    assert [starts[f"B0.{j}"] for j in range(3)] == [12, 14, 16]
    assert t.makespan == 18
    assert [(x.start, x.end) for x in t.transfers if x.sender == 0] == [(1, 3), (3, 5), (5, 7)]
    _, delay = timeline_of("ranks = 2 microbatches = 3 schedule = gpipe cost { F = 1 B = 2 comm = 2 }")
    assert delay.makespan == 16


def test_both_directions_share_the_lanes_first_come_first_served():
    # 1F1B, 2 ranks x 4, F = 1, B = 2; stage 0 sends 2 (1.5 long), stage 1 sends 4 (2.5 long).
    # Rank 0: F0 0-1, F1 1-2 (transfers 1-2.5, 2.5-4). Rank 1: F0 2.5, B0 3.5-5.5 (sent 5.5-8),
    # F1 5.5, B1 6.5-8.5 (8.5-11). Rank 0: B0 8-10, F2 10-11 (11-12.5), B1 11-13, F3 13-14
    # (14-15.5). Rank 1: F2 12.5, B2 13.5-15.5: its transfer waits for rank 0's lane (F3's, to
    # 15.5): 15.5-18; F3 15.5, B3 16.5-18.5 (18.5-21). Rank 0: B2 18-20, B3 21-23.
    compiled, t = timeline_of("ranks = 2 microbatches = 4 schedule = 1f1b cost { F = 1 B = 2 "
                              "link { bandwidth = 2 latency = 0.5 } activation_bytes = 2 "
                              "stage 1 { activation_bytes = 4 } }")
    assert [c.comm for c in compiled.spec.costs] == [1.5, 2.5]
    assert t.makespan == 23
    b2 = next(x for x in t.transfers if str(x.instr) == "B1.2")
    assert (b2.start, b2.end) == (15.5, 18)
    # waited on transfers: rank 0's B0 2.5, B2 2.5, B3 1; rank 1's F0 1.5, F2 1.5
    assert [r.lane_exposed for r in t.ranks] == [6, 3]
    assert [r.lane_busy for r in t.ranks] == [16, 16]  # 4 x 1.5 + 4 x 2.5, on both ends


def test_compute_beside_a_transfer_pays_comm_share():
    # GPipe, 2 ranks x 2, F = 1, B = 2, transfers 2 long, comm_share 0.5 (half speed beside one).
    # Rank 0: F0 0-1; F1 runs beside F0's transfer (1-3): 1 unit of work at half speed, 1-3.
    # Rank 1: F0 3-5 beside F1's transfer (3-5); F1 5-6; B0 6-8; B1 beside B0's transfer (8-10):
    # 1 unit by 10, then 1 at full speed, to 11. Rank 0: B0 from 10, beside B1's transfer (11-13):
    # 1 unit by 11, 1 more at half speed by 13; B1 13-15.
    _, t = timeline_of("ranks = 2 microbatches = 2 schedule = gpipe "
                       "cost { F = 1 B = 2 link { bandwidth = 1 latency = 2 comm_share = 0.5 } }")
    spans = {str(s.instr): (s.start, s.end) for s in t.slots}
    assert spans == {"F0.0": (0, 1), "F0.1": (1, 3), "F1.0": (3, 5), "F1.1": (5, 6), "B1.0": (6, 8),
                     "B1.1": (8, 11), "B0.0": (10, 13), "B0.1": (13, 15)}
    assert t.makespan == 15


def test_finish_time_stretches_work_inside_busy_intervals():
    assert finish_time(0, 3, [], 0, 0.5) == 3
    assert finish_time(0, 3, [(1, 3)], 0, 0.5) == 4  # 1 unit, 1 unit in 2, 1 unit
    assert finish_time(2, 1, [(0, 1), (1, 6)], 0, 0.25) == 6  # all inside: 1 / 0.25 from 2
    assert finish_time(0, 1, [(5, 6)], 0, 0.5) == 1  # ends before the transfer


def test_link_settings_round_trip_through_the_writer():
    [spec] = schedc.parse("pipeline p { ranks = 4 microbatches = 8 schedule = zb-h1 cost { F = 1 B = 2 "
                          "link { bandwidth = 8 latency = 0.25 comm_share = 0.1 } activation_bytes = 2 "
                          "stage 2, 3 { activation_bytes = 16777216  F = 1.5 } } }", "rt.sched")
    [again] = schedc.parse(format_pipeline(spec), "again.sched")
    assert again == spec and again.link == spec.link
    assert [c.activation_bytes for c in again.costs] == [2, 2, 16777216, 16777216]
    assert schedc.simulate(schedc.compile(again)).makespan == schedc.simulate(schedc.compile(spec)).makespan


def test_another_family_keeps_the_link_and_recuts_the_sizes():
    [spec] = schedc.parse("pipeline p { ranks = 4 microbatches = 8 schedule = 1f1b cost { F = 2 B = 4 "
                          "link { bandwidth = 2 } activation_bytes = 2 stage 3 { activation_bytes = 4 } } }",
                          "recut.sched")
    zbv = with_family(spec, "zbv")
    assert zbv.link == spec.link and zbv.num_stages == 8
    assert [c.activation_bytes for c in zbv.costs] == [2, 2, 2, 2, 2, 2, 4, 4]
    assert [c.comm for c in zbv.costs] == [1, 1, 1, 1, 1, 1, 2, 2]
    assert schedc.simulate(schedc.compile(zbv)).linked


def test_the_example_draws_its_lanes_and_an_unlinked_file_none():
    [spec] = schedc.load(ROOT / "examples" / "moe_link.sched")
    compiled = schedc.compile(spec)
    timeline = schedc.simulate(compiled)
    svg = render_timeline_svg([Panel(compiled.spec, timeline)])
    assert svg.count('class="xfer"') == 2 * len(timeline.transfers) > 0
    assert "transfer on the link" in svg
    [plain] = schedc.load(ROOT / "examples" / "moe_chunk.sched")
    compiled = schedc.compile(plain)
    svg = render_timeline_svg([Panel(compiled.spec, schedc.simulate(compiled))])
    assert 'class="xfer"' not in svg and "transfer on the link" not in svg


def test_compare_counts_the_lane_as_exposed_communication(tmp_path, capsys):
    path = tmp_path / "link.sched"
    path.write_text("pipeline p { ranks = 4 microbatches = 8 cost { F = 1 B = 2 W = 1 "
                    "link { bandwidth = 1 latency = 0.5 } } }")
    assert main(["compare", str(path), "--schedules", "1f1b,zb-h1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    for row in rows:
        compiled = schedc.compile(with_family(schedc.load(path)[0], row["family"]))
        ranks = schedc.simulate(compiled).ranks
        assert row["communication"] == max(r.lane_busy for r in ranks) > 0
        assert row["exposed_communication"] == max(r.lane_exposed for r in ranks) > 0
    assert main(["compare", str(path), "--schedules", "1f1b"]) == 0
    assert "exposed" in capsys.readouterr().out
