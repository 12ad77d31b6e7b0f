"""The headline numbers of reference/schedules.md for DualPipe, through the Python API."""

import schedc

DUALPIPE = """
pipeline dp {
  ranks = 8
  microbatches = 20
  schedule = dualpipe
  cost { F = 1  B = 2  W = 1  F&B = 3  comm = 0 }
}
"""


def test_dualpipe_8x20_matches_reference_numbers():
    [spec] = schedc.parse(DUALPIPE, "dp.sched")
    timeline = schedc.simulate(schedc.compile(spec))
    assert timeline.makespan == 66
    assert [r.idle for r in timeline.ranks] == [6] * 8
    assert [r.peak_activations for r in timeline.ranks] == [9] * 8
