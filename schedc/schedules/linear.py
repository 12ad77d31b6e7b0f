"""The single-chunk linear families: GPipe, 1F1B, ZB-H1 and ZB-H2 (docs/schedules.md, "Families")."""

from __future__ import annotations

from ..ir import ComputeOrder, Instr, OpKind
from ..lang.spec import PipelineSpec
from .building_blocks import full_backward, op, require_placement, require_split


def check(spec: PipelineSpec) -> None:
    require_placement(spec, "linear")
    if spec.schedule in ("zb-h1", "zb-h2"):
        require_split(spec)


def build_gpipe(spec: PipelineSpec) -> ComputeOrder:
    """All forwards in microbatch order, then all backwards in the same order."""
    m = spec.microbatches
    rows = []
    for rank in range(spec.ranks):
        chunk = (0, rank)
        row = [op(OpKind.F, chunk, j) for j in range(m)]
        for j in range(m):
            row += full_backward(spec, chunk, j)
        rows.append(tuple(row))
    return ComputeOrder(tuple(rows))


def one_f_one_b_row(rank: int, ranks: int, m: int, warmup: int) -> list[tuple[str, int]]:
    """("F" | "B", microbatch) steps: `warmup` forwards, alternate F and B, then the last B's."""
    warmup = min(warmup, m)
    steps = [("F", j) for j in range(warmup)]
    for i in range(m - warmup):
        steps += [("F", warmup + i), ("B", i)]
    steps += [("B", j) for j in range(m - warmup, m)]
    return steps


def build_1f1b(spec: PipelineSpec) -> ComputeOrder:
    """Rank r: min(p-r-1, m) warm-up forwards, then one forward one backward, then cool-down."""
    rows = []
    for rank in range(spec.ranks):
        row = []
        for kind, j in one_f_one_b_row(rank, spec.ranks, spec.microbatches, spec.ranks - rank - 1):
            row += [op(OpKind.F, (0, rank), j)] if kind == "F" else full_backward(spec, (0, rank), j)
        rows.append(tuple(row))
    return ComputeOrder(tuple(rows))


def _zero_bubble_row(rank: int, m: int, warmup: int, delay: int) -> list[Instr]:
    """1F1B with I for B, and the W of microbatch j placed right after the I of microbatch
    j + delay; the W's left at the end run in microbatch order."""
    chunk, row, next_w = (0, rank), [], 0
    for kind, j in one_f_one_b_row(rank, 0, m, warmup):
        if kind == "F":
            row.append(op(OpKind.F, chunk, j))
            continue
        row.append(op(OpKind.I, chunk, j))
        if j - delay >= 0:
            row.append(op(OpKind.W, chunk, j - delay))
            next_w = j - delay + 1
    row += [op(OpKind.W, chunk, j) for j in range(next_w, m)]
    return row


def build_zb_h1(spec: PipelineSpec) -> ComputeOrder:
    """ZB-H1: 1F1B with split backwards; on rank s, W(j) runs after I(j+s). Peak memory p."""
    p, m = spec.ranks, spec.microbatches
    return ComputeOrder(tuple(tuple(_zero_bubble_row(s, m, p - s - 1, s)) for s in range(p)))


def build_zb_h2(spec: PipelineSpec) -> ComputeOrder:
    """ZB-H2: on rank s, 2(p-1-s) warm-up forwards (twice 1F1B's) and W(j) after I(j+2s).

    Every rank then holds 2p-1 activations at its peak, and the W's each rank keeps back
    (2s+1 at the end) cover the time the last input gradients take to travel back to rank 0,
    so the bubble is (p-1)(F+B-3W), but never below the (p-1)F that the last rank must wait
    for its first input (docs/schedules.md).
    """
    p, m = spec.ranks, spec.microbatches
    return ComputeOrder(tuple(tuple(_zero_bubble_row(s, m, 2 * (p - 1 - s), 2 * s)) for s in range(p)))
