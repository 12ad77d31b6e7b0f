"""Simulation: predict the timeline of a verified plan under the spec's cost model.

Each rank runs its compute instructions in order. An instruction starts when its rank is free and
every op it needs has finished, plus the producer stage's `comm` time when the producer is on
another rank. Costs: F, B (full backward), I = B - W, W, R (the stage's recompute option's cost);
an OVERLAP of F (stage a) and a backward (stage b) costs F(a) + B(b) - min(gain(a), gain(b)), where
gain(s) = F(s) + B(s) - F&B(s), so with one F&B for all stages it costs exactly F&B. Communication instructions take no rank time: their
cost is the transfer delay on the edge.

With a `link { }` (spec.link), the transfers run on a communication lane per rank instead
(overlap/lanes.py: both ends' lanes, one transfer at a time, compute slowed by the link's
comm_share beside one); the timeline then holds the transfers and the time each rank's compute
waited on them. Without a link that code is never run: every figure is the delay model's.

May import: errors, ir, dag, gcpause, lang, check, overlap
Libraries at module level: none
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from .dag import Dag, kahn_order, ops_of
from .errors import Diagnostic, SchedError
from .gcpause import gc_paused
from .ir import COMM, Instr, OpKind, Plan
from .check.memory import peak_activations
from .lang.recompute import chosen_option
from .lang.spec import PipelineSpec
from .overlap.lanes import simulate_with_lanes


class Slot(NamedTuple):
    """One compute instruction on the timeline; `index` is its place in the rank's plan list.
    (A NamedTuple: a large timeline makes hundreds of thousands of them.)"""

    rank: int
    index: int
    instr: Instr
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class RankStats:
    rank: int
    busy: float
    idle: float  # makespan - busy
    peak_activations: float
    lane_busy: float = 0  # with a link: the time its communication lane ran transfers
    lane_exposed: float = 0  # with a link: the time its compute waited on transfers


class LaneTransfer(NamedTuple):
    """With a link: one transfer on the lanes of `sender` and `receiver`, of the output of
    `instr` (the producing compute instruction, on the sender)."""

    sender: int
    receiver: int
    instr: Instr
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Timeline:
    """The simulated step: every slot, the makespan, per-rank figures and the critical path;
    with a link, the transfers on the communication lanes (`linked`)."""

    slots: tuple[Slot, ...]
    makespan: float
    ranks: tuple[RankStats, ...]
    critical_path: tuple[Slot, ...]
    transfers: tuple[LaneTransfer, ...] = ()
    linked: bool = False

    @property
    def bubble(self) -> float:
        """The largest idle time over the ranks (the definition in docs/schedules.md, "Model")."""
        return max(r.idle for r in self.ranks)

    @property
    def bubble_ratio(self) -> float:
        """Total idle time over (ranks x makespan)."""
        total = self.makespan * len(self.ranks)
        return sum(r.idle for r in self.ranks) / total if total else 0.0

    def to_json(self) -> dict:
        def lane(r: RankStats) -> dict:
            return {"lane_busy": r.lane_busy, "lane_exposed": r.lane_exposed} if self.linked else {}

        return {
            "makespan": self.makespan, "bubble": self.bubble, "bubble_ratio": self.bubble_ratio,
            "ranks": [{"rank": r.rank, "busy": r.busy, "idle": r.idle,
                       "peak_activations": r.peak_activations, **lane(r)} for r in self.ranks],
            "critical_path": [{"rank": s.rank, "instruction": str(s.instr), "start": s.start,
                               "end": s.end} for s in self.critical_path],
        }


def instr_cost(spec: PipelineSpec, instr: Instr) -> float:
    """The time one compute instruction keeps its rank busy."""
    if instr.kind is OpKind.OVERLAP:
        forward, backward = instr.parts
        fc, bc = spec.cost(forward.stage), spec.cost(backward.stage)
        gain = min(fc.forward + fc.backward - fc.overlap_cost, bc.forward + bc.backward - bc.overlap_cost)
        return instr_cost(spec, forward) + instr_cost(spec, backward) - gain
    if instr.kind is OpKind.R:  # recompute: the stage's chosen option's cost
        return chosen_option(spec, instr.stage).cost
    return getattr(spec.cost(instr.stage), _COST_FIELD[instr.kind])


_COST_FIELD = {OpKind.F: "forward", OpKind.B: "backward", OpKind.I: "input_grad", OpKind.W: "weight"}


def exposed_communication(spec: PipelineSpec, plan: Plan) -> tuple[tuple[float, float], ...]:
    """Per rank, (communication in its ops, the part of it no compute hid), from the stages'
    chunk figures (`StageCost.comm_forward` / `comm_backward` / `comm_hidden`; all 0 without a
    `chunk { }`). A lone F exposes its forward's communication, a lone B or I its backward's, W has
    none; an overlapped pair hides min(hidden(a), hidden(b)) of its two halves' (the pair model's
    figure when both halves are one stage's, as `instr_cost` takes the smaller gain)."""
    per_rank = []
    for row in plan.ranks:
        total = exposed = 0.0
        for instr in row:
            if not instr.is_compute:
                continue
            halves = instr.parts if instr.kind is OpKind.OVERLAP else (instr,)
            comm = sum(_op_comm(spec, h) for h in halves)
            hidden = (min(spec.cost(h.stage).comm_hidden for h in halves)
                      if instr.kind is OpKind.OVERLAP else 0.0)
            total, exposed = total + comm, exposed + max(0.0, comm - hidden)
        per_rank.append((total, exposed))
    return tuple(per_rank)


def _op_comm(spec: PipelineSpec, instr: Instr) -> float:
    cost = spec.cost(instr.stage)
    if instr.kind in (OpKind.W, OpKind.R):
        return 0.0
    return cost.comm_forward if instr.kind is OpKind.F else cost.comm_backward


def simulate(spec: PipelineSpec, dag: Dag, plan: Plan) -> Timeline:
    """The timeline of `plan`. Needs a plan that verifies (raises `SchedError` on a deadlock)."""
    with gc_paused():
        return _simulate(spec, dag, plan)


def compute_graph(spec: PipelineSpec, dag: Dag, plan: Plan):
    """The plan's compute instructions as a graph: `nodes` ((rank, index) of each), `preds` (per
    node, (predecessor node, delay) pairs: data dependencies with their transfer time, and the
    previous instruction on the same rank) and a topological `order` of the nodes. Raises
    `SchedError` when the plan deadlocks."""
    nodes = [(r, i) for r, row in enumerate(plan.ranks) for i, x in enumerate(row) if x.kind not in COMM]
    split = spec.split_backward
    ops = [ops_of(plan.ranks[r][i], split) for r, i in nodes]
    owner = {op: n for n, mine in enumerate(ops) for op in mine}
    preds = _predecessors(spec, dag, nodes, ops, owner)
    successors: list[list[int]] = [[] for _ in nodes]
    for n, ps in enumerate(preds):
        for p, _delay in ps:
            successors[p].append(n)
    order, stuck = kahn_order(len(nodes), successors)
    if stuck:
        raise SchedError([Diagnostic("cannot simulate: the plan deadlocks (run `schedc check`)")])
    return nodes, preds, order


def _simulate(spec: PipelineSpec, dag: Dag, plan: Plan) -> Timeline:
    nodes, preds, order = compute_graph(spec, dag, plan)
    if spec.link is not None:
        return _simulate_linked(spec, plan, nodes, preds, order)
    start, end, cause = [0.0] * len(nodes), [0.0] * len(nodes), [-1] * len(nodes)
    costs: dict[tuple, float] = {}  # instr_cost once per (kind, stage) or pair of them
    rows = plan.ranks
    for n in order:
        r, i = nodes[n]
        for p, delay in preds[n]:  # the latest-ready predecessor decides the start
            ready = end[p] + delay
            if ready > start[n] or cause[n] < 0:
                start[n], cause[n] = max(ready, start[n]), p
        instr = rows[r][i]
        parts = instr.parts
        key = (instr.kind, instr.stage,
               parts and (parts[0].kind, parts[0].stage, parts[1].kind, parts[1].stage))
        cost = costs.get(key)
        if cost is None:
            cost = costs[key] = instr_cost(spec, instr)
        end[n] = start[n] + cost
    return _timeline(spec, plan, nodes, start, end, cause)


def _simulate_linked(spec, plan, nodes, preds, order) -> Timeline:
    """The timeline with a communication lane per rank (overlap/lanes.py)."""
    costs: dict[tuple, float] = {}
    work = []
    for r, i in nodes:
        instr = plan.ranks[r][i]
        key = (instr.kind, instr.stage, instr.parts and tuple((p.kind, p.stage) for p in instr.parts))
        if key not in costs:
            costs[key] = instr_cost(spec, instr)
        work.append(costs[key])
    rank_of = [r for r, _i in nodes]
    run = simulate_with_lanes(rank_of, work, preds, order, len(plan.ranks), spec.link.comm_share)
    busy, exposed = [0.0] * len(plan.ranks), [0.0] * len(plan.ranks)
    transfers = []
    for t in run.transfers:
        sender, receiver = rank_of[t.source], rank_of[t.target]
        busy[sender] += t.end - t.start
        busy[receiver] += t.end - t.start
        r, i = nodes[t.source]
        transfers.append(LaneTransfer(sender, receiver, plan.ranks[r][i], t.start, t.end))
    for n, waited in enumerate(run.waited):
        exposed[rank_of[n]] += waited
    timeline = _timeline(spec, plan, nodes, run.start, run.end, run.cause)
    ranks = tuple(replace(s, lane_busy=busy[s.rank], lane_exposed=exposed[s.rank]) for s in timeline.ranks)
    return replace(timeline, ranks=ranks, transfers=tuple(transfers), linked=True)


def _predecessors(spec, dag, nodes, ops, owner) -> list[list[tuple[int, float]]]:
    """For each node: (node it waits for, delay after that node ends)."""
    preds: list[list[tuple[int, float]]] = []
    previous_on_rank: dict[int, int] = {}
    comm = [c.comm for c in spec.costs]
    predecessors = dag.preds
    for n, (r, _i) in enumerate(nodes):
        previous = previous_on_rank.get(r)
        ps = [] if previous is None else [(previous, 0.0)]
        previous_on_rank[r] = n
        for op in ops[n]:
            for need in predecessors[op]:
                m = owner[need]
                if m != n:
                    ps.append((m, comm[need.stage] if nodes[m][0] != r else 0.0))
        preds.append(ps)
    return preds


def _timeline(spec, plan, nodes, start, end, cause) -> Timeline:
    slots = [Slot(r, i, plan.ranks[r][i], start[n], end[n]) for n, (r, i) in enumerate(nodes)]
    origin = min(start, default=0.0)
    makespan = max(end, default=0.0) - origin
    busy_of = [0.0] * len(plan.ranks)
    compute: list[list[Instr]] = [[] for _ in plan.ranks]  # each rank's compute instructions
    for s in slots:
        busy_of[s.rank] += s.end - s.start
        compute[s.rank].append(s.instr)
    ranks = []
    for rank, busy in enumerate(busy_of):
        peak = peak_activations(spec, tuple(compute[rank]), rank)
        ranks.append(RankStats(rank, busy, makespan - busy, peak))
    path, n = [], max(range(len(nodes)), key=lambda k: end[k], default=-1)
    while n >= 0:
        path.append(slots[n])
        n = cause[n]
    return Timeline(tuple(slots), makespan, tuple(ranks), tuple(reversed(path)))
