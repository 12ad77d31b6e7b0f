"""Priority rules the search starts from (lower first), and the memory levels it tries.

- `rule_priorities`: by kind (backward first, forward first, ...) then microbatch, and by the
  longest path left to the end of the step ("critical path first") held back by a fraction of a
  period per microbatch, for the active scheme of `list_scheduler`, which starts whatever it can
  and needs only a ranking;
- `periodic_priorities`: a time for each op, microbatch k's ops at k periods plus their earliest
  start along the microbatch's own path (a modulo schedule), for the serial scheme, which takes
  ops in this order and so needs times, not ranks;
- `memory_caps`: levels below the limit to hold a rank to (a shallower warm-up).
"""

from __future__ import annotations

from ..dag import kahn_order
from .problem import B, F, I, W, Problem

PERIODS = (0.5, 0.75, 1.0, 1.25)  # periods tried, as fractions of the busiest rank's work per microbatch
HOLD_BACK = (1 / 12, 1 / 6, 1 / 3)  # critical path first: microbatch k's ops held back k x this x the period


def memory_caps(prob: Problem) -> list[float]:
    """Memory levels below the limit to hold a rank to: p/2, p, 3p/2, 2p and 3p microbatches'
    worth (one microbatch: the most it holds on a rank), those under the limit."""
    one = max(max(row) for row in prob.need) + max(prob.base)
    p = prob.ranks
    levels = sorted({max(one, round(k * p) * (one - max(prob.base)) + max(prob.base))
                     for k in (0.5, 1, 1.5, 2, 3)})
    return [c for c in levels if c < prob.limit - 1e-9]


def rule_priorities(prob: Problem) -> list[tuple[str, list[float]]]:
    """Named priority vectors (lower first) that the list scheduler starts from."""
    m = max(1, prob.spec.microbatches)
    depth = [op.stage for op in prob.ops]
    mb = [op.microbatch + op.direction * 0.5 for op in prob.ops]
    rules = {
        "backward first": {B: 0, I: 0, F: 1, W: 2},
        "backward first, W before F": {B: 0, I: 0, W: 1, F: 2},
        "forward first": {F: 0, B: 1, I: 1, W: 2},
    }
    out = []
    for name, weight in rules.items():
        for deep_first in (1, -1):
            out.append((f"{name}, {'deep' if deep_first > 0 else 'shallow'} stages first",
                        [weight[k] * 4 * m + mb[o] - deep_first * depth[o] * 1e-3
                         for o, k in enumerate(prob.kind)]))
    out.append(("microbatch order", [mb[o] * 4 + {F: 0, B: 1, I: 1, W: 2}[k] for o, k in enumerate(prob.kind)]))
    left, period = _path_to_end(prob), _period(prob)
    for share in HOLD_BACK:
        out.append((f"critical path first, microbatches {share:.2g} period apart",
                    [mb[o] * share * period - left[o] for o in range(prob.n)]))
    return out


def _period(prob: Problem) -> float:
    """The busiest rank's work per microbatch."""
    work = [0.0] * prob.ranks
    for o in range(prob.n):
        work[prob.rank[o]] += prob.dur[o]
    return max(work) / (1 + max((op.microbatch for op in prob.ops), default=0))


def _topological_order(prob: Problem) -> list[int]:
    """The ops in an order where each comes after all its predecessors (`dag.kahn_order`)."""
    return kahn_order(prob.n, [[s for s, _delay in succs] for succs in prob.succs])[0]


def _path_to_end(prob: Problem) -> list[float]:
    """Each op's longest path to the end of the step, itself and the delays included (its
    "bottom level"): list scheduling by it puts the ops the step waits on longest first."""
    left = [0.0] * prob.n
    for o in reversed(_topological_order(prob)):
        left[o] = prob.dur[o] + max((left[s] + delay for s, delay in prob.succs[o]), default=0.0)
    return left


def periodic_priorities(prob: Problem) -> list[tuple[str, list[float]]]:
    """Microbatch k's ops at k x period + their earliest start (comm included) on an idle
    pipeline, for a few periods around the busiest rank's work per microbatch: the steady state
    of a modulo schedule, each op where the period puts it."""
    head = earliest_starts(prob)
    period = _period(prob)
    mb = [op.microbatch + op.direction * 0.5 for op in prob.ops]
    return [(f"period {k:g} x the busiest rank's work", [mb[o] * period * k + head[o] for o in range(prob.n)])
            for k in PERIODS]


def earliest_starts(prob: Problem) -> list[float]:
    """Each op's earliest start with every rank free: its longest path from a first op."""
    head = [0.0] * prob.n
    for o in _topological_order(prob):
        for s, delay in prob.succs[o]:
            head[s] = max(head[s], head[o] + prob.dur[o] + delay)
    return head
