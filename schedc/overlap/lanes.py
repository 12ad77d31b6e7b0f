"""A communication lane per rank: the pipeline's transfers on a link, beside each rank's compute.

With a `link { }` in the cost block (docs/language.md, "Link"), a transfer of stage s's output
(its activation forward, its input gradient backward) takes latency + activation_bytes(s) /
bandwidth and occupies the communication lanes of both its ends, the sender's and the receiver's.
A lane runs one transfer at a time, first come first served: a transfer is issued when the compute
op that produces it ends (transfers issued at one instant go in the order their ops ended), and it
starts when both lanes are free. While a rank's lane runs a transfer, the compute running on that
rank progresses at rate 1 - comm_share (as in the pair model, pair.py); transfers are never slowed.

`simulate_with_lanes` is an event simulation of exactly this over the plan's compute graph as flat
arrays (simulate.py builds them); without a link simulate.py never calls it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import NamedTuple, Sequence

_END, _ARRIVE = 0, 1  # event kinds: a compute op ends; a transfer reaches its receiver


@dataclass(frozen=True, slots=True)
class Link:
    """The network between neighbouring ranks: `bandwidth` (size units per time unit), `latency`
    (time units per transfer) and `comm_share` (the share of compute lost while a transfer runs)."""

    bandwidth: float
    latency: float = 0
    comm_share: float = 0

    def transfer_time(self, size: float) -> float:
        """How long a transfer of `size` occupies both ends' lanes."""
        return self.latency + size / self.bandwidth


class Transfer(NamedTuple):
    """One transfer on the lanes: from node `source` (its producer) to node `target`."""

    source: int
    target: int
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class LaneRun:
    """What `simulate_with_lanes` returns, per node: start, end, the predecessor whose arrival
    decided the start (-1: none) and the time it waited on transfers (its start minus the latest
    end of the ops it needs); and every transfer, in order of issue."""

    start: list[float]
    end: list[float]
    cause: list[int]
    waited: list[float]
    transfers: list[Transfer]


def finish_time(start: float, work: float, busy: Sequence[tuple[float, float]], first: int,
                slow: float) -> float:
    """When `work` started at `start` ends, progressing at rate `slow` inside the lane's `busy`
    intervals (sorted, disjoint; those before `first` end before `start`) and at rate 1 outside."""
    t, left = start, work
    for k in range(first, len(busy)):
        a, b = busy[k]
        if b <= t:
            continue
        a = max(a, t)
        if t + left <= a:
            return t + left
        left -= a - t
        if left <= (b - a) * slow:
            return a + left / slow
        left -= (b - a) * slow
        t = b
    return t + left


class _Lanes:
    """The lanes' state during one simulation: when each is next free and, with a compute
    slowdown, the intervals each is busy (the first that may still matter at `first`)."""

    def __init__(self, ranks: int, slowed: bool):
        self.free = [0.0] * ranks
        self.busy: list[list[tuple[float, float]]] = [[] for _ in range(ranks)]
        self.first = [0] * ranks
        self.slowed = slowed

    def reserve(self, sender: int, receiver: int, issued: float, length: float) -> tuple[float, float]:
        """The transfer's (start, end): both lanes free, never before it is issued."""
        start = max(issued, self.free[sender], self.free[receiver])
        end = start + length
        self.free[sender] = self.free[receiver] = end
        if self.slowed and length > 0:
            self.busy[sender].append((start, end))
            self.busy[receiver].append((start, end))
        return start, end

    def skip_before(self, rank: int, t: float) -> None:
        """Forget the intervals of `rank` that end by `t` (no later compute can meet them)."""
        busy, k = self.busy[rank], self.first[rank]
        while k < len(busy) and busy[k][1] <= t:
            k += 1
        self.first[rank] = k


def simulate_with_lanes(rank_of: Sequence[int], work: Sequence[float],
                        preds: Sequence[Sequence[tuple[int, float]]], order: Sequence[int],
                        ranks: int, comm_share: float) -> LaneRun:
    """Run the compute graph with a communication lane per rank. Node n runs on rank `rank_of[n]`
    for `work[n]` (stretched while its lane is busy); `preds[n]` are (node, length) pairs: a node on
    another rank sends it a transfer of that length, one on the same rank (its previous op among
    them) is needed with no transfer. `order` is a topological order (the nodes with no
    predecessors start at 0, in it). Needs a graph without cycles (simulate.py's `compute_graph`)."""
    n = len(work)
    slowed, slow = comm_share > 0, 1.0 - comm_share
    start, end, cause = [0.0] * n, [0.0] * n, [-1] * n
    ready, base = [0.0] * n, [0.0] * n  # latest arrival; latest producer end
    pending = [len(p) for p in preds]
    successors: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for m, ps in enumerate(preds):
        for p, length in ps:
            successors[p].append((m, length))
    lanes, running, version = _Lanes(ranks, slowed), [-1] * ranks, [0] * n
    transfers: list[Transfer] = []
    events: list[tuple[float, int, int, int, int]] = []  # (time, sequence, kind, node, version or source)
    sequence = 0

    def begin(m: int, t: float) -> None:
        nonlocal sequence
        r = rank_of[m]
        start[m], running[r] = t, m
        if slowed:
            lanes.skip_before(r, t)
            end[m] = finish_time(t, work[m], lanes.busy[r], lanes.first[r], slow)
        else:
            end[m] = t + work[m]
        sequence += 1
        heapq.heappush(events, (end[m], sequence, _END, m, version[m]))

    def arrive(m: int, t: float, source: int) -> None:
        if t > ready[m] or cause[m] < 0:
            ready[m], cause[m] = max(t, ready[m]), source
        base[m] = max(base[m], end[source])
        pending[m] -= 1
        if pending[m] == 0:
            begin(m, ready[m])

    def stretch(r: int, from_time: float) -> None:
        """A transfer now reserved on `r`'s lane from `from_time` slows the op running there."""
        nonlocal sequence
        m = running[r]
        if m < 0 or from_time >= end[m]:
            return
        end[m] = finish_time(start[m], work[m], lanes.busy[r], lanes.first[r], slow)
        version[m] += 1
        sequence += 1
        heapq.heappush(events, (end[m], sequence, _END, m, version[m]))

    for m in order:
        if pending[m] == 0:
            begin(m, 0.0)
    while events:
        t, _seq, kind, m, tag = heapq.heappop(events)
        if kind == _ARRIVE:
            arrive(m, t, tag)
            continue
        if tag != version[m]:
            continue  # an end since moved later by a transfer
        r = rank_of[m]
        running[r] = -1
        for target, length in successors[m]:
            receiver = rank_of[target]
            if receiver == r:
                arrive(target, t, m)
                continue
            a, b = lanes.reserve(r, receiver, t, length)
            transfers.append(Transfer(m, target, a, b))
            if slowed and b > a:
                stretch(r, a)
                stretch(receiver, a)
            sequence += 1
            heapq.heappush(events, (b, sequence, _ARRIVE, target, m))
    waited = [start[m] - base[m] for m in range(n)]
    return LaneRun(start, end, cause, waited, transfers)
