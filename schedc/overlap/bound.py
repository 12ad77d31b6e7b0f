"""Lower bounds on the makespan of any two-lane schedule of a pair: no lane orders do better.

Each part is a proof (s = comm_share, C = compute work, M = communication work):
- lanes: C and M done on one lane each; while they overlap (for a time v <= min(M, C / (1 - s)))
  compute runs at 1 - s, so the compute lane is busy C + s v and the span is at least
  max(C + s v, C + M - (1 - s) v), least at the largest v: `work_bound(C, M, s)`;
- lane with head and tail: the compute lane cannot start before some chunk's communication that
  precedes its first compute part is done, and after its last part some chunk's communication that
  must follow still runs; the same for the communication lane (compute at rate <= 1);
- chains: the forward chain (at least the sum of its parts), the backward chain, or the backward
  chain up to a W part's B part and then that W part; each plus s times the other chunk's
  communication: that runs while the chain computes (stretching it by s per unit) or while the
  chain waits (1 per unit), never beside the chain's own communication (one communication lane).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .chunk import COMM, COMPUTE, PairProblem, total


class Bound(NamedTuple):
    """A lower bound: its value and every part (name, value) it is the largest of."""

    value: float
    parts: tuple[tuple[str, float], ...]


def work_bound(compute: float, comm: float, share: float) -> float:
    """The least span of `compute` work on one lane and `comm` time on the other when compute runs
    at rate 1 - share while communication runs (module docstring, first proof)."""
    if compute <= 0 or comm <= 0:
        return max(compute, comm)
    overlap = min(comm, compute / (1.0 - share))
    return max(compute + share * overlap, compute + comm - (1.0 - share) * overlap)


def _head(problem: PairProblem, chain: list[int], lane: int) -> float:
    """The work on the other lane that precedes the chain's first part on `lane` (all of it when
    the chain has none)."""
    out = 0.0
    for i in chain:
        if problem.lane[i] == lane:
            return out
        out += problem.work[i]
    return out


def _forced_after(problem: PairProblem, chain: list[int], lane: int) -> float:
    """The least work that must run after the last part on `lane` of `chain` (a chain with its W
    parts hanging off it): the other lane's chain parts after it, or W parts whose B part is at
    or after it (they run on the compute lane, one after the other)."""
    on_lane = [k for k, i in enumerate(chain) if problem.lane[i] == lane]
    if not on_lane:
        return math.inf
    last = on_lane[-1]
    after = math.fsum(problem.work[i] for i in chain[last + 1:])
    if lane == COMM:
        position = {b: k for k, b in enumerate(chain)}
        after += math.fsum(problem.work[w] for w in problem.weight
                           if position.get(problem.pred[w], -1) >= last)
    return after


def _lane_bound(problem: PairProblem, lane: int) -> float:
    """Head + the lane's work + tail (second proof); compute counted at rate 1. The lane's first
    part is some chunk's first part on it (or a W part, after its B part); its last part is some
    chunk's last part on it (a W part when there are any, on the compute lane)."""
    work = total(problem, range(len(problem.work)), lane)
    if work <= 0:
        return 0.0
    forward, backward = list(problem.forward), list(problem.backward)
    heads, tails = [], []
    for chain in (forward, backward):
        if any(problem.lane[i] == lane for i in chain):
            heads.append(_head(problem, chain, lane))
            tails.append(_forced_after(problem, chain, lane))
    if lane == COMPUTE and problem.weight:
        prefix, upto = 0.0, {}
        for b in backward:
            prefix += problem.work[b]
            upto[b] = prefix
        heads.append(min(upto[problem.pred[w]] for w in problem.weight))
        tails.append(0.0)
    return min(heads) + work + min(tails)


def _chain_bound(problem: PairProblem) -> float:
    """The forward chain; the backward chain, or to a W part's B part and then the W part; each
    plus s times the other chunk's communication (third proof)."""
    comm_f = total(problem, problem.forward, COMM)
    comm_b = total(problem, problem.backward, COMM)
    longest_b = total(problem, problem.backward)
    prefix, upto = 0.0, {}
    for b in problem.backward:
        prefix += problem.work[b]
        upto[b] = prefix
    for w in problem.weight:
        longest_b = max(longest_b, upto[problem.pred[w]] + problem.work[w])
    return max(total(problem, problem.forward) + problem.share * comm_b, longest_b + problem.share * comm_f)


def lower_bound(problem: PairProblem) -> Bound:
    """The largest of the proofs in the module docstring, with each part named."""
    ids = range(len(problem.work))
    compute, comm = total(problem, ids, COMPUTE), total(problem, ids, COMM)
    parts = (("lanes", work_bound(compute, comm, problem.share)),
             ("compute lane", _lane_bound(problem, COMPUTE)),
             ("communication lane", _lane_bound(problem, COMM)),
             ("chains", _chain_bound(problem)))
    return Bound(max(v for _, v in parts), parts)
