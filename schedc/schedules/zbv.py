"""ZB-V (zero bubble, V placement): rank r holds stages r and 2p-1-r, backward split."""

from __future__ import annotations

from ..errors import at
from ..ir import ComputeOrder, OpKind
from ..lang.spec import PipelineSpec
from .building_blocks import RankProgram, op, constraint_error, require_placement, require_split


def check(spec: PipelineSpec) -> None:
    require_placement(spec, "v")
    require_split(spec)
    if spec.microbatches < 2 * spec.ranks:
        raise constraint_error(spec, f"needs microbatches >= 2 x ranks = {2 * spec.ranks} "
                               f"(ranks = {spec.ranks}{at(spec.source.span('ranks'))}), "
                               f"got {spec.microbatches}", "microbatches")


def _rank_program(spec: PipelineSpec, rank: int) -> RankProgram:
    """The reference's ZB-V program for one rank (the ZB-V paper, arxiv.org/abs/2405.15362; docs/schedules.md)."""
    p, m = spec.ranks, spec.microbatches
    first, second = (0, rank), (0, 2 * p - 1 - rank)
    prog = RankProgram(spec)
    for _ in range(2 * (p - rank) - 1):  # warm-up: first-chunk forwards
        prog.forward(first)
    for _ in range(rank):  # then (second, first) forward pairs
        prog.forward(second)
        prog.forward(first)
    for _ in range(p - rank):  # then second-chunk forward, I and W
        prog.forward(second)
        prog.input_grad(second, weight="now")
    while prog.count(second, "F") < m:  # steady state: both chunks' F, I, W in turn
        if prog.count(first, "F") < m:
            prog.forward(first)
        prog.input_grad(first, weight="now")
        prog.forward(second)
        prog.input_grad(second, weight="now")
    next_w_first, next_w_second = prog.count(first, "B"), prog.count(second, "B")
    for _ in range(rank):  # cool-down: I's first ...
        prog.input_grad(first, weight="caller")
        prog.input_grad(second, weight="caller")
    for _ in range(p - rank):  # ... with first-chunk W's filling the gaps
        prog.input_grad(first, weight="caller")
        prog.ops.append(op(OpKind.W, first, next_w_first))
        next_w_first += 1
    prog.ops += [op(OpKind.W, second, j) for j in range(next_w_second, m)]
    prog.ops += [op(OpKind.W, first, j) for j in range(next_w_first, m)]
    return prog


def build(spec: PipelineSpec) -> ComputeOrder:
    return ComputeOrder(tuple(tuple(_rank_program(spec, r).ops) for r in range(spec.ranks)))
