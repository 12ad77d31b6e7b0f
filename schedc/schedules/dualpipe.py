"""DeepSeek's DualPipe (bidirectional) and DualPipeV (V placement): the eight-phase program.

Both run the same per-rank program (DeepSeek's reference code, github.com/deepseek-ai/DualPipe; docs/schedules.md), with
  DualPipe on p ranks:  H = p/2, h = min(r, p-1-r), M = N/2; ranks r and p-1-r mirror each other;
  DualPipeV on P ranks: H = P,   h = r,             M = N.
"chunk 0" is the stage fed from the near end of this rank's half, "chunk 1" the other.
"""

from __future__ import annotations

from ..errors import at
from ..ir import ComputeOrder
from ..lang.spec import PipelineSpec
from .building_blocks import Chunk, RankProgram, constraint_error, require_placement, require_split


def check(spec: PipelineSpec) -> None:
    bidirectional = spec.schedule == "dualpipe"
    require_placement(spec, "bidirectional" if bidirectional else "v")
    require_split(spec)
    if bidirectional:
        _check_dualpipe_sizes(spec)
    elif spec.microbatches < spec.num_stages:
        raise constraint_error(spec, f"needs microbatches >= number of stages = {spec.num_stages} "
                               f"(2 x ranks{at(spec.source.span('ranks'))}), got {spec.microbatches}",
                               "microbatches")


def _check_dualpipe_sizes(spec: PipelineSpec) -> None:
    p, n = spec.ranks, spec.microbatches
    if p % 2:
        raise constraint_error(spec, f"needs an even number of ranks (two halves that mirror each "
                               f"other), got ranks = {p}", "ranks")
    if n < 2 * p:
        raise constraint_error(spec, f"needs microbatches >= 2 x ranks = {2 * p} (ranks = {p}"
                               f"{at(spec.source.span('ranks'))}), got {n}", "microbatches")


def _layout(spec: PipelineSpec, rank: int) -> tuple[int, int, int, Chunk, Chunk]:
    """(H, h, M, chunk0, chunk1) of `rank`; a chunk is (direction, stage)."""
    p = spec.ranks
    if spec.schedule == "dualpipev":
        return p, rank, spec.microbatches, (0, rank), (0, 2 * p - 1 - rank)
    half, m = p // 2, spec.microbatches // 2
    forward_dir, reverse_dir = (0, rank), (1, p - 1 - rank)
    if rank < half:
        return half, rank, m, forward_dir, reverse_dir
    return half, p - 1 - rank, m, reverse_dir, forward_dir


def _rank_program(spec: PipelineSpec, rank: int) -> RankProgram:
    H, h, M, c0, c1 = _layout(spec, rank)
    prog = RankProgram(spec)
    for _ in range(2 * (H - h - 1)):  # 1: chunk-0 forwards
        prog.forward(c0)
    for _ in range(h + 1):  # 2: both chunks' forwards
        prog.forward(c0)
        prog.forward(c1)
    for _ in range(H - h - 1):  # 3: I, the oldest W, F (zero-bubble style)
        prog.input_grad(c1)
        prog.weight()
        prog.forward(c1)
    for i in range(M - 2 * H + h + 1):  # 4: the main loop of overlapped pairs
        if i == 0 and h == H - 1:  # the middle rank(s): not overlapped, to shrink the bubble
            prog.forward(c0)
            prog.backward(c1)
        else:
            prog.overlapped(c0, c1)
        prog.overlapped(c1, c0)
    for _ in range(H - h - 1):  # 5
        prog.backward(c1)
        prog.overlapped(c1, c0)
    _phase_six(prog, h, c0, c1)
    for _ in range(H - h - 1):  # 7: W's fill the gaps between I's
        prog.weight()
        prog.input_grad(c0)
    for _ in range(h + 1):  # 8: the W's left
        prog.weight()
    return prog


def _phase_six(prog: RankProgram, h: int, c0: Chunk, c1: Chunk) -> None:
    """h+1 rounds of (chunk-1 backward, chunk-0 backward); halfway through, the backwards switch
    from full to split (I now, W queued): before the chunk-1 backward when h is odd, between
    the two when h is even. Exactly h+1 backwards end up split."""
    split = False
    for i in range(h + 1):
        switch_here = i == (h + 1) // 2
        split = split or (switch_here and h % 2 == 1)
        prog.input_grad(c1) if split else prog.backward(c1)
        split = split or (switch_here and h % 2 == 0)
        prog.input_grad(c0) if split else prog.backward(c0)


def build(spec: PipelineSpec) -> ComputeOrder:
    programs = [_rank_program(spec, r) for r in range(spec.ranks)]
    pairs = frozenset(pair for prog in programs for pair in prog.pairs)
    return ComputeOrder(tuple(tuple(prog.ops) for prog in programs), pairs)
