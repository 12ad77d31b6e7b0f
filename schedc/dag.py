"""The dependency DAG of compute ops; the only module that imports networkx.

Nodes are compute `Instr`s (F, and B or I+W) for every direction, stage and microbatch, and an R
per microbatch on a stage that recomputes: R needs what the backward needed (its forward and the
incoming gradient) and the backward needs only its R. Edges are the data dependencies of
docs/schedules.md ("Model"); `Dag.is_cross_rank` tells a point-to-point
transfer (producer and consumer on different ranks) from a local hand-over.

May import: errors, ir, lang
Libraries at module level: networkx
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable

import networkx as nx

from .ir import Instr, OpKind
from .lang.recompute import chosen_option
from .lang.spec import PipelineSpec


@dataclass(frozen=True)
class Dag:
    """A built DAG: the spec it was built from and each op's direct predecessors (the passes walk
    those in their hot loops); the networkx graph is made on first use of `graph`."""

    spec: PipelineSpec
    preds: dict[Instr, tuple[Instr, ...]]

    @cached_property
    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(self.preds)
        graph.add_edges_from(self.edges())
        return graph

    def predecessors(self, op: Instr) -> tuple[Instr, ...]:
        return self.preds[op]

    def successors(self, op: Instr) -> Iterable[Instr]:
        return self.graph.succ[op]

    def is_cross_rank(self, producer: Instr, consumer: Instr) -> bool:
        """True when the edge is a point-to-point transfer (the ops live on different ranks)."""
        rank_of = self.spec.rank_of
        return rank_of(producer.direction, producer.stage) != rank_of(consumer.direction, consumer.stage)

    def edges(self) -> Iterable[tuple[Instr, Instr]]:
        """Every (producer, consumer) edge."""
        return ((p, c) for c, ps in self.preds.items() for p in ps)

    def depends(self, later: Instr, earlier: Instr) -> bool:
        """True when `later` needs `earlier`, directly or through other ops."""
        return nx.has_path(self.graph, earlier, later)

    def __contains__(self, op: Instr) -> bool:
        return op in self.preds

    def __len__(self) -> int:
        return len(self.preds)


def dependencies(spec: PipelineSpec, op: Instr) -> list[Instr]:
    """The ops that `op` directly needs (docs/schedules.md, "Model": Dependencies)."""
    kind, d, s, j = op.kind, op.direction, op.stage, op.microbatch
    if kind is OpKind.F:
        return [Instr(OpKind.F, d, s - 1, j)] if s > 0 else []
    if kind is OpKind.W:
        return [Instr(OpKind.I, d, s, j)]
    if kind is not OpKind.R and chosen_option(spec, s) is not None:
        return [Instr(OpKind.R, d, s, j)]  # the backward of a recomputing stage: its R has the rest
    needs = [Instr(OpKind.F, d, s, j)]  # activations (and the loss on the last stage)
    if s < spec.num_stages - 1:
        needs.append(Instr(OpKind.I if spec.split_backward else OpKind.B, d, s + 1, j))
    return needs


def build_dag(spec: PipelineSpec) -> Dag:
    """Build the DAG of `spec`'s compute ops. Pure: the spec is not changed. Every microbatch
    repeats microbatch 0's pattern (`dependencies` of an op names ops of its own microbatch), so
    the pattern is asked once per (kind, direction, stage) and copied for the others."""
    patterns: dict[tuple, tuple] = {}
    preds = {}
    for op in spec.compute_ops():
        key = (op.kind, op.direction, op.stage)
        pattern = patterns.get(key)
        if pattern is None:
            pattern = patterns[key] = tuple((q.kind, q.direction, q.stage) for q in dependencies(spec, op))
        j, compute = op.microbatch, Instr.compute
        preds[op] = tuple([compute(kind, d, s, j) for kind, d, s in pattern])
    return Dag(spec, preds)


def find_cycle(edges: Iterable[tuple[object, object]]) -> list[object] | None:
    """A cycle in the directed graph given by `edges`, as its nodes in order; None if acyclic."""
    graph = nx.DiGraph()
    graph.add_edges_from(edges)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in cycle]


@lru_cache(maxsize=1 << 20)  # every pass asks this of every instruction
def ops_of(instr: Instr, split_backward: bool) -> tuple[Instr, ...]:
    """The DAG nodes an instruction executes. A full `B` in a split pipeline runs its `I` and `W`
    together; an OVERLAP runs the ops of both its parts; communication runs none."""
    kind = instr.kind
    if kind is OpKind.OVERLAP:
        forward, backward = instr.parts
        return ops_of(forward, split_backward) + ops_of(backward, split_backward)
    if kind is OpKind.B and split_backward:
        return (instr.with_kind(OpKind.I), instr.with_kind(OpKind.W))
    if kind in _COMPUTE_KINDS:
        return (instr,)
    return ()


_COMPUTE_KINDS = frozenset({OpKind.F, OpKind.B, OpKind.I, OpKind.W, OpKind.R})


def independent(a: Instr, b: Instr) -> bool:
    """True when neither op depends on the other.

    Every DAG edge joins two ops of the same (direction, microbatch), and within one such group
    every backward depends on every forward (through the loss on the last stage), so an F and a
    backward are independent exactly when their (direction, microbatch) differ.
    """
    return (a.direction, a.microbatch) != (b.direction, b.microbatch)


def kahn_order(num_nodes: int, successors: list[list[int]]) -> tuple[list[int], list[int]]:
    """Topological order of nodes 0..n-1 (Kahn's algorithm, FIFO, so the order is deterministic).

    Returns (order, stuck): `stuck` lists the nodes left on or behind a cycle (empty if acyclic).
    Pure Python on integer ids: the hot loop of verification and simulation.
    """
    indegree = [0] * num_nodes
    for succ in successors:
        for v in succ:
            indegree[v] += 1
    ready = [v for v in range(num_nodes) if indegree[v] == 0]
    order = []
    while ready:
        u = ready.pop()
        order.append(u)
        for v in successors[u]:
            indegree[v] -= 1
            if indegree[v] == 0:
                ready.append(v)
    stuck = [v for v in range(num_nodes) if indegree[v] > 0]
    return order, stuck
