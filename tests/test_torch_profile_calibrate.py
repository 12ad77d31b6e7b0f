"""`--profile --calibrate N` (issue 13): each figure the plan runs is taken from a traced run of
it, the others scaled, so the block reproduces what the run measured. A trace written from a
simulated timeline must calibrate back to the costs that made it."""

import dataclasses
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # the torch backend: slow; skip locally with -m 'not torchrun'

import schedc  # noqa: E402
from schedc.backends.torch.profile.calibrate import (MIN_SAMPLES, calibrated_rows, format_calibration,  # noqa: E402
                                                     run_durations, run_sends)
from schedc.ir import format_instr  # noqa: E402

ROOT = Path(__file__).parent.parent
MLP = str(ROOT / "examples" / "models" / "mlp.py")

# uneven stages, one overlap gain (F + B - F&B = 1) on every stage
DUALPIPEV = """pipeline v { ranks = 2 microbatches = 6 schedule = dualpipev
  cost { F = 2 B = 4 W = 2 F&B = 5 comm = 0.1
         stage 1 { F = 3 B = 5 W = 2 F&B = 7 }
         stage 2 { F = 2.5 B = 4.5 W = 2 F&B = 6 }
         stage 3 { F = 4 B = 6 W = 3 F&B = 9 } } }"""


def trace_of(spec, steps: int = 3, warmup_factor: float = 10.0, sends: dict | None = None) -> dict:
    """A Chrome trace as `measure.merge_trace` writes it, of `steps` steps each lasting what the
    simulator says (the first step's ops `warmup_factor` times longer: a warm-up), with a SEND slice
    of `sends[(kind, stage)]` ms after each op that sends."""
    timeline = schedc.simulate(schedc.compile(spec))
    events = []
    for step in range(steps):
        factor = warmup_factor if step == 0 else 1.0
        for slot in timeline.slots:
            ms = (slot.end - slot.start) * factor
            events.append({"ph": "X", "name": format_instr(slot.instr), "cat": slot.instr.kind.value,
                           "pid": slot.rank, "tid": 0, "ts": slot.start * 1e3, "dur": ms * 1e3, "args": {"step": step}})
            for (kind, stage), send_ms in (sends or {}).items():
                if slot.instr.kind.value == kind[-1] and slot.instr.stage == stage:
                    events.append({"ph": "X", "name": f"{kind}{stage}.{slot.instr.microbatch}@1", "cat": kind,
                                   "pid": slot.rank, "tid": 0, "ts": 0, "dur": send_ms * 1e3, "args": {"step": step}})
    return {"traceEvents": [{"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {}}] + events}


def rows_of(costs, scale: float = 1.0) -> list[dict]:
    return [{"stage": s, "F": c.forward * scale, "B": c.backward * scale, "W": c.weight * scale,
             "F&B": c.overlap_cost * scale, "comm": c.comm} for s, c in enumerate(costs)]


def with_rows(spec, rows):
    return dataclasses.replace(spec, costs=tuple(
        dataclasses.replace(c, forward=r["F"], backward=r["B"], weight=r["W"], overlap=r["F&B"], comm=r["comm"])
        for c, r in zip(spec.costs, rows)))


def test_a_simulated_run_calibrates_back_to_the_costs_that_made_it():
    [spec] = schedc.parse(DUALPIPEV, "v.sched")
    run = run_durations(trace_of(spec))
    assert run.steps == 2 and run.pairs  # the warm-up step is not counted; dualpipev overlaps pairs
    wrong = rows_of(spec.costs, scale=0.5)  # a profile half the truth, gains included
    calibrated = calibrated_rows(wrong, run)
    for row, cost in zip(calibrated, spec.costs):
        assert (row["F"], row["B"], row["W"], row["F&B"]) == pytest.approx(
            (cost.forward, cost.backward, cost.weight, cost.overlap_cost))
        assert "F&B" in row["measured"]  # every stage is a half of some pair
    truth = schedc.simulate(schedc.compile(spec)).makespan
    assert schedc.simulate(schedc.compile(with_rows(spec, calibrated))).makespan == pytest.approx(truth)
    assert schedc.simulate(schedc.compile(with_rows(spec, wrong))).makespan < 0.6 * truth


def test_figures_the_plan_does_not_run_are_scaled_by_the_stages_measured_ones():
    [spec] = schedc.parse("pipeline p { ranks = 2 microbatches = 4 schedule = 1f1b cost { F = 2 B = 4 W = 2 } }",
                          "p.sched")
    run = run_durations(trace_of(spec))
    profile = [{"stage": s, "F": 1.0, "B": 1.0, "W": 0.25, "F&B": 1.5, "comm": 0.0} for s in range(2)]
    for row in calibrated_rows(profile, run):
        assert row["measured"] == ["B", "F"]  # 1F1B runs no I, W or pair
        assert (row["F"], row["B"]) == pytest.approx((2, 4))
        assert row["W"] == pytest.approx(0.25 * 4)  # as the backward moved: x4
        assert row["F&B"] == pytest.approx(2 + 4 - 0.5 * 3)  # the profiled gain 0.5, x3 as the stage's figures
        assert max(row["F"], row["B"]) <= row["F&B"] <= row["F"] + row["B"]


def test_a_figure_run_fewer_than_min_samples_times_is_scaled_not_taken():
    [spec] = schedc.parse("pipeline p { ranks = 2 microbatches = 4 schedule = 1f1b cost { F = 2 B = 4 W = 2 } }",
                          "p.sched")
    trace = trace_of(spec, steps=2)  # one counted step: 4 forwards and 4 backwards a stage
    first_forward = next(e for e in trace["traceEvents"] if e.get("cat") == "F" and e["args"]["step"] == 1)
    first_forward["dur"] *= 5  # one slow forward of stage 0
    profile = [{"stage": s, "F": 1.0, "B": 2.0, "W": 1.0, "F&B": 3.0, "comm": 0.0} for s in range(2)]
    assert MIN_SAMPLES > 4
    for row in calibrated_rows(profile, run_durations(trace)):
        assert row["measured"] == []
        assert row["B"] == pytest.approx(4.0)  # the profiled 2, moved x2 as the backwards were
    # stage 0's forwards, pooled (their interquartile mean): the slow one is dropped, F does not move
    rows = calibrated_rows(profile, run_durations(trace))
    assert rows[1]["F"] == pytest.approx(2.0) and rows[0]["F"] == pytest.approx(2.0)


def test_sends_come_from_the_run_else_from_the_probe():
    [spec] = schedc.parse("pipeline p { ranks = 2 microbatches = 4 schedule = 1f1b }", "p.sched")
    run = run_durations(trace_of(spec, sends={("SEND_F", 0): 0.3}))
    forward, backward = run_sends(run, [0.1, 0.2])
    assert forward == pytest.approx([0.3, 0.2])  # stage 0's from the run; stage 1 sent nothing forward there
    assert backward == pytest.approx([0.0, 0.1])  # a backward sends the previous stage's output's size


def test_a_pair_slower_than_its_halves_calibrates_to_no_gain():
    [spec] = schedc.parse(DUALPIPEV, "v.sched")
    trace = trace_of(spec)
    for event in trace["traceEvents"]:
        if event.get("cat") == "OVERLAP":
            event["dur"] *= 3
    for row in calibrated_rows(rows_of(spec.costs), run_durations(trace)):
        assert row["F&B"] == pytest.approx(row["F"] + row["B"])  # the block cannot say "slower than F + B"
    table = format_calibration(rows_of(spec.costs), calibrated_rows(rows_of(spec.costs), run_durations(trace)), 2)
    assert table.count("\n") == 1 + spec.num_stages and all(line.startswith("#") for line in table.splitlines())
    for line in table.splitlines()[2:]:  # the stage and four cells, never run together
        assert len(re.split(r"\s{2,}", line[1:].strip())) == 5, line


def test_profile_calibrates_with_a_traced_run_and_keeps_stdout_a_cost_block(tmp_path, capsys):
    from schedc.cli import main
    out = tmp_path / "profiled.sched"
    argv = ["run", str(ROOT / "examples" / "manual.sched"), "--model", MLP, "--profile", "--repeats", "4",
            "--bandwidth", "10", "--profile-alone", "--calibrate", "2", "--profile-out", str(out)]
    assert main(argv) == 0
    printed, err = capsys.readouterr()
    assert "calibrating: 2 traced steps" in err and "measured step" in err  # the run reports on stderr
    assert "# calibrated by a run of the plan (1 counted step(s))" in printed
    block = printed[printed.index("cost {"):]
    assert all(line.startswith("#") for line in printed[:printed.index("cost {")].splitlines())
    assert "calibrated by a 2-step run of the plan" in out.read_text()
    [spec] = schedc.load(out)
    [printed_spec] = schedc.parse(f"pipeline p {{ ranks = 2 microbatches = 4 {block} }}", "x.sched")
    assert spec.costs == printed_spec.costs and all(c.forward > 0 and c.weight <= c.backward for c in spec.costs)


def test_calibration_is_skipped_with_the_reason_when_no_run_can_start_here(capsys):
    from schedc.cli import main
    argv = ["run", str(ROOT / "examples" / "manual.sched"), "--model", MLP, "--profile", "--repeats", "4",
            "--bandwidth", "10", "--profile-alone", "--device", "cpu", "--comm", "nccl"]
    assert main(argv) == 0
    printed, err = capsys.readouterr()
    assert "# not calibrated by a run: NCCL runs on GPUs only" in printed and "calibrating" not in err
    header = printed[printed.index("cost {"):].splitlines()[0]
    assert "measured by schedc run --profile" in header and "calibrated" not in header  # the isolated timings' block


@pytest.mark.parametrize("schedule,noted", [("1f1b", False), ("search", True)])
def test_a_cost_chosen_plan_that_changes_with_calibration_is_noted(tmp_path, monkeypatch, capsys, schedule, noted):
    """`search` picks its plan from the costs: when the calibrated block would pick another plan than
    the one the calibration ran, the output says so (a fixed family's plan never changes)."""
    from schedc.backends.torch.profile import driver
    from schedc.cli import main
    from schedc.compiler import with_family
    source = tmp_path / "p.sched"
    source.write_text(f"pipeline p {{ ranks = 2 microbatches = 4 schedule = {schedule} search_time = 0.2 }}\n")
    [spec] = schedc.load(source)
    fake = run_durations(trace_of(spec))
    ran = schedc.compile(with_family(spec, "gpipe"))  # a plan no calibrated search would choose
    monkeypatch.setattr(driver, "calibration_run", lambda spec, args, block: (fake, ran if noted else
                                                                              schedc.compile(spec)))
    argv = ["run", str(source), "--model", MLP, "--profile", "--repeats", "4", "--bandwidth", "10", "--profile-alone"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "# calibrated by a run of the plan" in printed and "# comm fitted to the calibration run's step" in printed
    assert ("chooses another plan than the one the calibration ran" in printed) is noted
