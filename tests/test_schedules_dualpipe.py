"""DualPipe's headline numbers and the structure DeepSeek's reference (github.com/deepseek-ai/DualPipe) and docs/schedules.md describe."""

from collections import Counter
from pathlib import Path

import schedc
from schedc.ir import OpKind

from helpers import make_spec, run

EXAMPLE = Path(__file__).parent.parent / "examples" / "dualpipe.sched"


def test_example_is_exactly_the_specified_pipeline():
    [spec] = schedc.load(EXAMPLE)
    assert (spec.ranks, spec.microbatches, spec.placement, spec.schedule) == (8, 20, "bidirectional", "dualpipe")
    assert spec.split_backward and spec.overlap
    assert {(c.forward, c.backward, c.weight, c.overlap_cost, c.comm) for c in spec.costs} == {(1, 2, 1, 3, 0)}
    assert set(spec.activations) == {1}


def test_example_simulates_to_66_with_6_idle_and_9_peak_everywhere():
    [spec] = schedc.load(EXAMPLE)
    timeline = schedc.simulate(schedc.compile(spec))
    assert timeline.makespan == 66
    assert [r.idle for r in timeline.ranks] == [6] * 8
    assert [r.peak_activations for r in timeline.ranks] == [9] * 8


def test_peak_memory_does_not_grow_with_microbatches():
    peaks = {max(r.peak_activations for r in run(make_spec("dualpipe", 8, m, FB=3))[1].ranks)
             for m in (16, 20, 32, 48)}
    assert peaks == {9}


def test_mirror_ranks_run_the_same_program_with_directions_swapped():
    compiled, _ = run(make_spec("dualpipe", 8, 20, FB=3))
    rows = compiled.order.ranks
    for r in range(4):
        mirrored = [(op.kind, 1 - op.direction, op.microbatch) for op in rows[7 - r]]
        assert [(op.kind, op.direction, op.microbatch) for op in rows[r]] == mirrored


def test_every_rank_holds_two_replicas_and_sums_their_gradients_last():
    compiled, _ = run(make_spec("dualpipe", 8, 20, FB=3))
    for rank, row in enumerate(compiled.plan.ranks):
        assert row[-1].kind is OpKind.GRAD_SUM and row[-1].peer == 7 - rank
        stages = {(x.direction, x.stage) for x in row if x.kind is OpKind.F}
        assert stages == {(0, rank), (1, 7 - rank)}


def test_split_backwards_and_overlaps_follow_the_phases():
    compiled, _ = run(make_spec("dualpipe", 8, 20, FB=3))
    for rank, row in enumerate(compiled.plan.ranks):
        h = min(rank, 7 - rank)
        kinds = Counter(x.kind for x in row)
        overlaps = [x for x in row if x.kind is OpKind.OVERLAP]
        # phase 4: 2 pairs per repeat (one fewer on the middle ranks), phase 5: one pair per repeat
        expected_pairs = 2 * (10 - 8 + h + 1) - (h == 3) + (4 - h - 1)
        assert len(overlaps) == expected_pairs
        assert all(p.parts[1].kind is OpKind.B for p in overlaps)  # full backwards inside pairs
        # I's: phase 3 and 7 (H-h-1 each), phase 6 (h+1 split backwards)
        assert kinds[OpKind.I] == kinds[OpKind.W] == 2 * (4 - h - 1) + h + 1


def test_middle_ranks_do_not_overlap_their_first_pair():
    compiled, _ = run(make_spec("dualpipe", 8, 20, FB=3))
    for rank in (3, 4):
        row = [x for x in compiled.plan.ranks[rank] if x.is_compute]
        first_b = next(i for i, x in enumerate(row) if x.kind in (OpKind.B, OpKind.OVERLAP))
        assert row[first_b].kind is OpKind.B and row[first_b - 1].kind is OpKind.F
