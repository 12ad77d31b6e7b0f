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
  round trip R long; with recompute, `a` is the part a forward keeps until its R); so some
  ceil(m / k) of those intervals are disjoint: fill + ceil(m/k) R + the rest of the backward.
  And the memory-time area of all activations fits under the limit.
With overlapped pairs every op's time counts as the least share of a pair it can take (`least_time`).
`smallest_limit(spec)` is the least per-rank memory any schedule needs: one microbatch's forward
passes all of a rank's stages (in one direction) before any of their backwards frees memory.
Cost: linear in the ops of one microbatch, and O(n log n) per rank for the rank work (a segment
tree, `_best_window`): the largest pipelines the op budget admits bound in about a second
(benchmarks/corners.py); tests/test_search_bound.py checks it against the O(n^3) definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..dag import dependencies, kahn_order
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


def least_time(spec: PipelineSpec):
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
    """Earliest start (head) and least time after the end (tail) of each op of microbatch 0
    (its ops only: a longest path forward and one backward over them, in a topological order)."""
    ops = [op for op in spec.compute_ops() if op.microbatch == 0]
    index = {op: k for k, op in enumerate(ops)}
    rank = [spec.rank_of(op.direction, op.stage) for op in ops]
    comm = [c.comm for c in spec.costs]
    preds = [[(index[q], comm[q.stage] if rank[index[q]] != rank[k] else 0.0) for q in dependencies(spec, op)]
             for k, op in enumerate(ops)]
    succs: list[list[tuple[int, float]]] = [[] for _ in ops]
    for k, ps in enumerate(preds):
        for q, delay in ps:
            succs[q].append((k, delay))
    order, _stuck = kahn_order(len(ops), [[k for k, _d in ss] for ss in succs])
    weight = [least(op) for op in ops]
    start, after = [0.0] * len(ops), [0.0] * len(ops)
    for k in order:
        start[k] = max((start[q] + weight[q] + delay for q, delay in preds[k]), default=0.0)
    for k in reversed(order):
        after[k] = max((delay + weight[s] + after[s] for s, delay in succs[k]), default=0.0)
    return dict(zip(ops, start)), dict(zip(ops, after))


def lower_bound(spec: PipelineSpec) -> Bound:
    """The largest of the bounds in the module docstring (see `Bound.parts` for each)."""
    least = least_time(spec)
    head, tail = _one_microbatch(spec, least)
    parts = [("critical path of one microbatch", max(head[op] + least(op) + tail[op] for op in head))]
    parts.append(_rank_work(spec, least, head, tail))
    if spec.memory_limit is not None:  # the strongest of each kind of memory bound
        memory = _memory_bounds(spec, least, head, tail)
        for kind in ("at most", "activations x time"):
            parts += sorted((p for p in memory if kind in p[0]), key=lambda p: p[1])[-1:]
    value, source = max((v, name) for name, v in parts)
    return Bound(value, source, tuple((name, v) for name, v in parts))


def _rank_work(spec, least, head, tail) -> tuple[str, float]:
    """One machine with release and tail times: for every set S of a rank's op kinds whose earliest
    start is >= h and whose least drain is >= t, the step lasts h + m x (S's work) + t.

    Every pair (h, t) of a head and a tail of the rank's ops is a candidate when some op of
    positive work has head >= h and tail >= t; the best one is found by `_best_window` in
    O(n log n) per rank."""
    m = spec.microbatches_per_direction
    mine: list[list[Instr]] = [[] for _ in range(spec.ranks)]
    for op in head:
        mine[spec.rank_of(op.direction, op.stage)].append(op)
    best, where = 0.0, 0
    for r, ops in enumerate(mine):
        window = _best_window([(head[op], tail[op], m * least(op)) for op in ops])
        if window is None:
            continue
        h, t = window  # its figure again as the definition's sum, whatever the rounding in the tree
        value = h + m * sum(least(op) for op in ops if head[op] >= h and tail[op] >= t) + t
        if value > best:
            best, where = value, r
    return f"rank {where}'s work, plus the pipeline fill before it and the drain after it", best


def _best_window(ops: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """max over heads h and tails t of h + (work of the ops with head >= h and tail >= t) + t, over
    the pairs where that work is positive: the best (h, t); None when no op has work.

    Heads are taken from the latest down; a tree over the sorted tails holds, for each tail t,
    t + the work so far of the ops whose tail is >= t (an op adds its work to every tail up to
    its own: a range add), and the best tail for h is a range maximum up to the largest tail of
    an op with work."""
    tails = sorted({t for _h, t, _w in ops})
    where = {t: j for j, t in enumerate(tails)}
    tree = _MaxAddTree(tails)
    best, top, k = None, -1, 0
    ops = sorted(ops, key=lambda op: -op[0])
    while k < len(ops):
        h = ops[k][0]
        while k < len(ops) and ops[k][0] == h:  # every op whose head is h joins
            _h, t, w = ops[k]
            tree.add(where[t], w)
            if w > 0:
                top = max(top, where[t])
            k += 1
        if top < 0:
            continue
        value, j = tree.best(top)
        if best is None or h + value > best[0]:
            best = (h + value, h, tails[j])
    return None if best is None else best[1:]


class _MaxAddTree:
    """A segment tree over values v[0..n-1]: add w to v[0..j], and the largest v[0..j] with its
    index, each in O(log n). A node holds the maximum of its range with every add made to the
    whole range (`pending`), which is never pushed down."""

    def __init__(self, values: list[float]):
        size = 1
        while size < len(values):
            size *= 2
        self.size = size
        self.top = [-math.inf] * (2 * size)
        self.at = [0] * (2 * size)
        self.pending = [0.0] * (2 * size)
        for j, v in enumerate(values):
            self.top[size + j], self.at[size + j] = v, j
        for node in range(size - 1, 0, -1):
            self._pull(node)

    def _pull(self, node: int) -> None:
        left, right = 2 * node, 2 * node + 1
        child = left if self.top[left] >= self.top[right] else right
        self.top[node], self.at[node] = self.top[child] + self.pending[node], self.at[child]

    def add(self, j: int, w: float) -> None:
        """v[0..j] += w."""
        self._add(1, 0, self.size - 1, j, w)

    def _add(self, node: int, lo: int, hi: int, j: int, w: float) -> None:
        if hi <= j:
            self.top[node] += w
            self.pending[node] += w
            return
        mid = (lo + hi) // 2
        self._add(2 * node, lo, mid, j, w)
        if j > mid:
            self._add(2 * node + 1, mid + 1, hi, j, w)
        self._pull(node)

    def best(self, j: int) -> tuple[float, int]:
        """The largest of v[0..j] and its index (the first on a tie)."""
        return self._best(1, 0, self.size - 1, j)

    def _best(self, node: int, lo: int, hi: int, j: int) -> tuple[float, int]:
        if hi <= j:
            return self.top[node], self.at[node]
        mid = (lo + hi) // 2
        value, at = self._best(2 * node, lo, mid, j)
        if j > mid:
            right = self._best(2 * node + 1, mid + 1, hi, j)
            if right[0] > value:
                value, at = right
        return value + self.pending[node], at


def _stages_by_rank(spec: PipelineSpec) -> list[list[tuple[int, int]]]:
    """`spec.stages_of(r)` for every rank r, in one pass over the stages."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(spec.ranks)]
    for d in range(spec.directions):
        for s in range(spec.num_stages):
            out[spec.rank_of(d, s)].append((d, s))
    return out


def _memory_bounds(spec, least, head, tail) -> list[tuple[str, float]]:
    """A stage that recomputes holds at least `MemoryCosts.held` of its activation from its
    forward's start to the end of the op that frees it: the figure counted here."""
    mem = memory_costs(spec)
    held = mem.held or mem.activation
    m = spec.microbatches_per_direction
    out = []
    freeing = OpKind.I if spec.split_backward else OpKind.B
    for r, stages in enumerate(_stages_by_rank(spec)):
        room = spec.memory_limit - mem.base[r]
        area, first = 0.0, math.inf
        for d, s in stages:
            a = held[s]
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
    """The least `limit` any schedule of `spec` meets, and why. With recompute, a forward holds
    only `held` of its stage's activation; the R of the rank's deepest stage restores the rest
    while every shallower stage of the rank still holds its part."""
    mem = memory_costs(spec)
    held = mem.held or mem.activation
    best = LimitNeed(0.0, "nothing to hold")
    for r, mine in enumerate(_stages_by_rank(spec)):
        for d in range(spec.directions):
            stages = [s for dd, s in mine if dd == d]
            if not stages:
                continue
            restore = mem.activation[stages[-1]] - held[stages[-1]]
            need = mem.base[r] + sum(held[s] for s in stages) + restore
            if need <= best.value:
                continue
            best = LimitNeed(need, _limit_reason(spec, mem, r, d, stages, held, restore))
    return best


def _limit_reason(spec, mem, r: int, d: int, stages: list[int], held, restore: float) -> str:
    what = (f"rank {r} holds stage{'s' if len(stages) > 1 else ''} "
            f"{', '.join(map(str, stages))}{' (direction 1)' if d else ''}; one microbatch's "
            f"forward passes {'all of them' if len(stages) > 1 else 'it'} before a backward "
            f"frees anything: activations {' + '.join(f'{held[s]:g}' for s in stages)}")
    if restore:
        what += f", plus {restore:g} restored by stage {stages[-1]}'s recompute before its backward"
    if mem.base[r]:
        what += f", plus parameters {mem.base[r]:g}"
    return what
