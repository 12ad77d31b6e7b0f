"""A fast re-simulation of one fixed plan under many stage costs (the partitioner's inner loop).

A family's plan does not depend on costs, so everything but the arithmetic is done once: the
compute instructions in a topological order of (rank order + data dependencies), each one's
predecessors with their transfer delay, each one's cost as a sum of per-stage terms, and each
rank's activation profile as the distinct "microbatches held per stage" vectors along its list.
Per split the cost is one pass over flat lists. It is the reference simulator
(`schedc.simulate`) restated; tests/test_partition_search.py checks the two agree.
"""

from __future__ import annotations

from collections import Counter

from ..dag import ops_of
from ..ir import OpKind
from ..simulate import compute_graph
from ..lang.recompute import chosen_option
from ..lang.spec import StageCost

_FIELD = {OpKind.F: 0, OpKind.B: 1, OpKind.I: 2, OpKind.W: 3, OpKind.R: 4}


class FastPlan:
    """One compiled plan, ready to be re-timed: `makespan(costs)` and `peaks(activations)`.

    Shapes: `costs` is one StageCost per stage; `activations` one float per stage;
    `peaks` returns one float per rank.
    """

    def __init__(self, compiled):
        spec, dag, plan = compiled.spec, compiled.dag, compiled.plan
        nodes, preds, order = compute_graph(spec, dag, plan)
        self.order = order
        self.preds = preds
        self.terms = [self._terms(plan.ranks[r][i]) for r, i in nodes]
        options = [chosen_option(spec, s) for s in range(spec.num_stages)]
        self.recompute = [0.0 if o is None else o.cost for o in options]  # R's time: the plan's choice
        self.profiles = [self._profile(spec, [x for x in row if x.is_compute]) for row in plan.ranks]

    @staticmethod
    def _terms(instr) -> tuple[tuple[int, int], ...]:
        parts = instr.parts if instr.kind is OpKind.OVERLAP else (instr,)
        return tuple((_FIELD[p.kind], p.stage) for p in parts)

    @staticmethod
    def _profile(spec, row) -> list[tuple[tuple[int, float], ...]]:
        """The distinct vectors of microbatches held per stage while each instruction runs (a
        recomputing stage's forward holds `keeps` of one, its R the rest)."""
        held: Counter = Counter()
        release = OpKind.W if spec.split_backward else OpKind.B
        seen = set()
        for instr in row:
            ops = ops_of(instr, spec.split_backward)
            for op in ops:
                option = chosen_option(spec, op.stage)
                if op.kind is OpKind.F:
                    held[op.stage] += 1 if option is None else option.keeps
                elif op.kind is OpKind.R:
                    held[op.stage] += 1 - option.keeps
            seen.add(tuple(sorted((s, c) for s, c in held.items() if c)))
            for op in ops:
                if op.kind is release:
                    held[op.stage] -= 1
        return [v for v in seen if v]

    def makespan(self, costs: tuple[StageCost, ...]) -> float:
        table = [(c.forward, c.backward, c.backward - c.weight, c.weight, r)
                 for c, r in zip(costs, self.recompute)]
        cost = [sum(table[s][f] for f, s in terms) for terms in self.terms]
        end = [0.0] * len(cost)
        preds = self.preds
        for n in self.order:
            start = 0.0
            for p, delay in preds[n]:
                ready = end[p] + delay
                if ready > start:
                    start = ready
            end[n] = start + cost[n]
        return max(end, default=0.0)

    def peaks(self, activations: tuple[float, ...]) -> list[float]:
        return [max((sum(activations[s] * c for s, c in v) for v in profile), default=0.0)
                for profile in self.profiles]
