"""Lower bounds: no plan of a pipeline ends sooner, and none fits in less memory.

`lower_bound(spec)` is a pure function of the spec (sizes, placement, costs, comm, memory limit);
each part is a proof that holds for every valid plan:
- critical path: one microbatch's ops in dependency order, comm on the way (a longest path);
- rank work: a rank is busy for all its ops' time, can start no earlier than its first op's
  earliest start (the pipeline fill) and must leave time for the ops that follow its last one;
  the same holds for any set of the rank's op kinds with their own fill and drain (the m
  forwards of stage 0 cannot all start at once, the I's must end before the I chain that follows);
- memory: at most k = floor((limit - parameters) / a) microbatches of a stage hold its activation
  `a` at once (from the forward's start to the end of the backward that frees it, at least one
  round trip R long); so some ceil(m / k) of those intervals are disjoint: fill + ceil(m/k) R +
  the rest of the backward. And the memory-time area of all activations fits under the limit.
With overlapped pairs every op's time counts as the least share of a pair it can take (`_least_time`).
`smallest_limit(spec)` is the least per-rank memory any schedule needs: one microbatch's forward
passes all of a rank's stages (in one direction) before any of their backwards frees memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..dag import build_dag
from ..ir import Instr, OpKind
from ..check.memory import memory_costs
from ..simulate import instr_cost
from ..lang.spec import PipelineSpec


@dataclass(frozen=True, slots=True)
class Bound:
    """A lower bound on the makespan: its value, what it comes from, and every part computed."""

    value: float
    source: str
    parts: tuple[tuple[str, float], ...]

    def gap(self, makespan: float) -> float:
        """How far `makespan` is above the bound, as a fraction of the bound."""
        return (makespan - self.value) / self.value if self.value > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LimitNeed:
    value: float
    reason: str


def _least_time(spec: PipelineSpec):
    """op -> the least time it can count for, in a sum of a rank's work or along a path.

    Without overlap: its cost. With overlapped pairs (each pair holds one forward and saves at
    most G = the largest F + B - F&B of any stage): a forward counts F - G, so a pair's cost
    F + B - gain is never undercounted; a backward counts its cost - max(0, G - the least F),
    since it lasts the whole pair, F + B - gain >= B - (gain - F)."""
    if not spec.overlap:
        return lambda op: instr_cost(spec, op)
    most_gain = max(max(0.0, c.forward + c.backward - c.overlap_cost) for c in spec.costs)
    least_forward = min(c.forward for c in spec.costs)

    def least(op: Instr) -> float:
        cost = instr_cost(spec, op)
        if op.kind is OpKind.F:
            return max(0.0, cost - most_gain)
        if op.kind in (OpKind.B, OpKind.I):
            return max(0.0, cost - max(0.0, most_gain - least_forward))
        return cost
    return least


def _one_microbatch(spec: PipelineSpec, least):
    """Earliest start (head) and least time after the end (tail) of each op of microbatch 0."""
    dag = build_dag(spec)
    ops = [op for op in dag.preds if op.microbatch == 0]
    delay = {}
    for op in ops:
        for q in dag.predecessors(op):
            cross = spec.rank_of(q.direction, q.stage) != spec.rank_of(op.direction, op.stage)
            delay[(q, op)] = spec.cost(q.stage).comm if cross else 0.0
    order = _topological(ops, dag)
    head, succs = {}, {op: [] for op in ops}
    for op in order:
        head[op] = max((head[q] + least(q) + delay[(q, op)] for q in dag.predecessors(op)), default=0.0)
        for q in dag.predecessors(op):
            succs[q].append(op)
    tail = {}
    for op in reversed(order):
        tail[op] = max((delay[(op, s)] + least(s) + tail[s] for s in succs[op]), default=0.0)
    return head, tail, dag


def _topological(ops, dag):
    placed, order = set(), []
    pending = list(ops)
    while pending:
        rest = []
        for op in pending:
            if all(q in placed for q in dag.predecessors(op)):
                placed.add(op)
                order.append(op)
            else:
                rest.append(op)
        pending = rest
    return order


def lower_bound(spec: PipelineSpec) -> Bound:
    """The largest of the bounds in the module docstring (see `Bound.parts` for each)."""
    least = _least_time(spec)
    head, tail, dag = _one_microbatch(spec, least)
    parts = [("critical path of one microbatch", max(head[op] + least(op) + tail[op] for op in head))]
    parts.append(_rank_work(spec, dag, least, head, tail))
    if spec.memory_limit is not None:  # the strongest of each kind of memory bound
        memory = _memory_bounds(spec, least, head, tail)
        for kind in ("at most", "activations x time"):
            parts += sorted((p for p in memory if kind in p[0]), key=lambda p: p[1])[-1:]
    value, source = max((v, name) for name, v in parts)
    return Bound(value, source, tuple((name, v) for name, v in parts))


def _rank_work(spec, dag, least, head, tail) -> tuple[str, float]:
    """One machine with release and tail times: for every set S of a rank's op kinds whose earliest
    start is >= h and whose least drain is >= t, the step lasts h + m x (S's work) + t."""
    best, where = 0.0, 0
    m = spec.microbatches_per_direction
    for r in range(spec.ranks):
        mine = [op for op in head if spec.rank_of(op.direction, op.stage) == r]
        for h in {head[op] for op in mine}:
            for t in {tail[op] for op in mine}:
                work = m * sum(least(op) for op in mine if head[op] >= h and tail[op] >= t)
                if work and h + work + t > best:
                    best, where = h + work + t, r
    return f"rank {where}'s work, plus the pipeline fill before it and the drain after it", best


def _memory_bounds(spec, least, head, tail) -> list[tuple[str, float]]:
    mem = memory_costs(spec)
    m = spec.microbatches_per_direction
    out = []
    freeing = OpKind.I if spec.split_backward else OpKind.B
    for r in range(spec.ranks):
        room = spec.memory_limit - mem.base[r]
        area, first = 0.0, math.inf
        for d, s in spec.stages_of(r):
            a = mem.activation[s]
            forward, release = Instr(OpKind.F, d, s, 0), Instr(freeing, d, s, 0)
            trip = head[release] + least(release) - head[forward]
            first = min(first, head[forward])
            area += m * a * trip
            if a <= 0 or room < a:
                continue
            k = math.floor(room / a + 1e-9)
            value = head[forward] + math.ceil(m / k) * trip + tail[release]
            out.append((f"memory: at most {k} microbatches of stage {s} fit on rank {r} at once, "
                        f"each held {trip:g} (its round trip)", value))
        if room > 0 and area > 0:
            out.append((f"memory: rank {r}'s activations x time must fit under the limit", first + area / room))
    return out


def smallest_limit(spec: PipelineSpec) -> LimitNeed:
    """The least `limit` any schedule of `spec` meets, and why."""
    mem = memory_costs(spec)
    best = LimitNeed(0.0, "nothing to hold")
    for r in range(spec.ranks):
        for d in range(spec.directions):
            stages = [s for dd, s in spec.stages_of(r) if dd == d]
            need = mem.base[r] + sum(mem.activation[s] for s in stages)
            if need <= best.value:
                continue
            held = " + ".join(f"{mem.activation[s]:g}" for s in stages)
            what = (f"rank {r} holds stage{'s' if len(stages) > 1 else ''} "
                    f"{', '.join(map(str, stages))}{' (direction 1)' if d else ''}; one microbatch's "
                    f"forward passes {'all of them' if len(stages) > 1 else 'it'} before a backward "
                    f"frees anything: activations {held}")
            if mem.base[r]:
                what += f", plus parameters {mem.base[r]:g}"
            best = LimitNeed(need, what)
    return best
