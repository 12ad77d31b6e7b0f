"""A pipeline as flat integer-indexed arrays: what the search's hot loops read.

Op ids 0..n-1 follow `spec.compute_ops()`. For every op:
  rank[o], kind[o] (F, B, I or W as the ints below), dur[o] (its simulated cost),
  preds[o] / succs[o]: [(other op, delay)], delay = the producer stage's comm when the two ops
  live on different ranks (as `simulate` charges it), else 0;
  alloc[o]: memory a forward adds; free[o]: memory the op releases after it runs (I frees all but
  the kept weight-gradient part, W the rest; a full B all of it); base[r]: memory a rank holds
  before any op (parameters);
  entry[o]: for a forward, the reservation that admits its microbatch on this rank: the sum of
  every activation this (direction, microbatch) will hold on the rank, when this forward is the
  rank's first stage on the microbatch's way down, else 0 (see `list_scheduler`, reservation mode).
Invariants: arrays have length n; `preds` and `succs` describe the same edges.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dag import Dag, build_dag
from ..ir import Instr, OpKind
from ..check.memory import memory_costs
from ..simulate import instr_cost
from ..lang.spec import PipelineSpec

F, B, I, W = 0, 1, 2, 3  # noqa: E741
KIND_ID = {OpKind.F: F, OpKind.B: B, OpKind.I: I, OpKind.W: W}


@dataclass(frozen=True)
class Problem:
    """The integer view of one pipeline (see the module docstring for each array)."""

    spec: PipelineSpec
    dag: Dag
    ops: tuple[Instr, ...]
    index: dict[Instr, int]
    rank: list[int]
    kind: list[int]
    dur: list[float]
    preds: list[list[tuple[int, float]]]
    succs: list[list[tuple[int, float]]]
    alloc: list[float]
    free: list[float]
    entry: list[float]
    base: list[float]
    limit: float
    group: list[int]  # (direction, microbatch) as one int: ops of one group may not overlap
    gain: list[float]  # the op's stage's F + B - F&B (what an overlapped pair saves)
    first: list[int]  # 1 + direction for the forward of stage 0 (a microbatch's entry), else 0
    need: list[list[float]]  # [direction][rank]: what one microbatch holds at most on the rank

    def pair_gain(self, forward: int, backward: int) -> float:
        return min(self.gain[forward], self.gain[backward])

    def pair_cost(self, forward: int, backward: int) -> float:
        """An overlapped pair's cost, computed as `simulate.instr_cost` does (same float steps)."""
        return self.dur[forward] + self.dur[backward] - self.pair_gain(forward, backward)

    @property
    def can_overlap(self) -> bool:
        """Whether any overlapped pair would save time (F&B below F + B somewhere)."""
        return any(g > 1e-9 for g in self.gain)

    @property
    def n(self) -> int:
        return len(self.ops)

    @property
    def ranks(self) -> int:
        return self.spec.ranks


def build_problem(spec: PipelineSpec, dag: Dag | None = None) -> Problem:
    """The arrays of `spec` (pure; `dag` is built when not given)."""
    dag = dag or build_dag(spec)
    ops = tuple(spec.compute_ops())
    index = {op: o for o, op in enumerate(ops)}
    rank = [spec.rank_of(op.direction, op.stage) for op in ops]
    comm = [c.comm for c in spec.costs]
    preds = [[(index[q], comm[q.stage] if rank[index[q]] != rank[o] else 0.0)
              for q in dag.predecessors(op)] for o, op in enumerate(ops)]
    succs: list[list[tuple[int, float]]] = [[] for _ in ops]
    for o, ps in enumerate(preds):
        for q, delay in ps:
            succs[q].append((o, delay))
    mem = memory_costs(spec)
    alloc = [mem.activation[op.stage] if op.kind is OpKind.F else 0.0 for op in ops]
    free = [_released(spec, mem, op) for op in ops]
    limit = float("inf") if spec.memory_limit is None else float(spec.memory_limit)
    return Problem(spec, dag, ops, index, rank, [KIND_ID[op.kind] for op in ops],
                   [instr_cost(spec, op) for op in ops], preds, succs, alloc, free,
                   _entries(spec, ops, mem), list(mem.base), limit,
                   [op.direction * spec.microbatches + op.microbatch for op in ops],
                   [_gain(spec.cost(op.stage)) for op in ops],
                   [1 + op.direction if op.kind is OpKind.F and op.stage == 0 else 0 for op in ops],
                   _needs(spec, mem))


def _needs(spec: PipelineSpec, mem) -> list[list[float]]:
    need = [[0.0] * spec.ranks for _ in range(spec.directions)]
    for d in range(spec.directions):
        for s in range(spec.num_stages):
            need[d][spec.rank_of(d, s)] += mem.activation[s]
    return need


def _gain(cost) -> float:
    return cost.forward + cost.backward - cost.overlap_cost


def _released(spec: PipelineSpec, mem, op: Instr) -> float:
    activation = mem.activation[op.stage]
    if op.kind is OpKind.B:
        return activation
    if op.kind is OpKind.I:
        return activation - mem.kept[op.stage]
    if op.kind is OpKind.W:
        return mem.kept[op.stage]
    return 0.0


def _entries(spec: PipelineSpec, ops, mem) -> list[float]:
    """For each forward on the first of its rank's stages (in the direction): the rank's sum."""
    first_stage, total = {}, {}
    for d in range(spec.directions):
        for s in range(spec.num_stages):
            key = (spec.rank_of(d, s), d)
            first_stage.setdefault(key, s)
            total[key] = total.get(key, 0.0) + mem.activation[s]
    out = []
    for op in ops:
        key = (spec.rank_of(op.direction, op.stage), op.direction)
        out.append(total[key] if op.kind is OpKind.F and first_stage[key] == op.stage else 0.0)
    return out
