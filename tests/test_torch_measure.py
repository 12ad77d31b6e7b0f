"""`schedc run --trace` (issue 24): measured / predicted only when the costs are in milliseconds
(a cost block `--profile` wrote); otherwise the line says the units differ. Formatting only: no
torchrun, no torch (measure.py imports neither)."""

import pytest

import schedc
from helpers import make_spec, run
from schedc.backends.torch.measure import PROFILED_COSTS, compare_with_simulation, costs_in_milliseconds

PIPELINE = """pipeline p {{
  ranks = 2  microbatches = 2  schedule = 1f1b
  {cost}
}}
"""
PROFILED = f"cost {{   # {PROFILED_COSTS}, in milliseconds\n    F = 2  B = 4  W = 2  F&B = 6  comm = 0\n  }}"
HANDWRITTEN = "cost { F = 1  B = 2 }   # ms, but written by hand"


def measured_parts(step_seconds: float, steps: int = 3) -> list[list[dict]]:
    """Two ranks' trace rows: each step one F and one B per rank, the step lasting `step_seconds`."""
    parts = []
    for rank in range(2):
        rows = []
        for step in range(steps):
            start = step * step_seconds
            rows += [{"step": step, "kind": "F", "start": start, "end": start + step_seconds / 4},
                     {"step": step, "kind": "B", "start": start + step_seconds / 2, "end": start + step_seconds}]
        parts.append(rows)
    return parts


@pytest.fixture
def timeline():
    _, simulated = run(make_spec("1f1b", 2, 2))
    return simulated


def test_trace_in_other_units_says_they_differ(timeline):
    first = compare_with_simulation(measured_parts(0.012), timeline).splitlines()[0]
    assert first.startswith(f"measured step 12.00 ms; predicted step {timeline.makespan:.4g} in the cost block's own units")
    assert "the units differ" in first and "measured / predicted =" not in first


def test_trace_in_milliseconds_prints_the_ratio(timeline):
    text = compare_with_simulation(measured_parts(0.012), timeline, in_milliseconds=True)
    first = text.splitlines()[0]
    ratio = 12.0 / timeline.makespan
    assert first == (f"measured step 12.00 ms; predicted step {timeline.makespan:.4g} ms (simulated makespan of the "
                     f"profiled cost block); measured / predicted = {ratio:.3f}")
    assert "the units differ" not in text
    assert text.splitlines()[-1].startswith("bubble ratio: measured ")  # the rest unchanged


@pytest.mark.parametrize("cost,expected", [(PROFILED, True), (HANDWRITTEN, False), ("", False)])
def test_costs_in_milliseconds_only_for_a_profiled_block(tmp_path, cost, expected):
    path = tmp_path / "p.sched"
    path.write_text(PIPELINE.format(cost=cost))
    [spec] = schedc.load(str(path))
    assert costs_in_milliseconds(spec) is expected
    assert costs_in_milliseconds(schedc.compile(spec).spec) is expected  # what the rank holds
    path.unlink()
    assert costs_in_milliseconds(spec) is False  # the file gone: not known to be ms


@pytest.mark.torchrun  # imports torch (seconds): with the backend's slow tests
def test_the_profiler_writes_the_mark_it_is_known_by():
    pytest.importorskip("torch")
    from schedc.backends.torch.profile.costblock import format_cost_block

    row = {"stage": 0, "F": 1.0, "B": 2.0, "W": 1.0, "F&B": 3.0, "comm": 0.1}
    assert PROFILED_COSTS in format_cost_block([row]).splitlines()[0]
