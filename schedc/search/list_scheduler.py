"""A priority list scheduler under the memory limit: Giffler-Thompson active schedules.

At each step it takes the op that could end first over all ranks (C*), and on that op's rank
chooses, among the ops that could start before C*, the one of lowest priority value. Every
schedule it builds is *active* (no op could start earlier without delaying another), and with the
right priorities every active schedule is reachable: the search (`local_search`) varies the
priorities. Without a memory limit an optimal schedule is among them; under a tight one it may
not be (see the serial scheme below). Ops are started in time order per rank, so the per-rank orders
it returns evaluate (`evaluate.evaluate_rows`) to exactly the times it computed.

Memory (the order-based model of `schedc.check.memory`): a forward may start only when it fits.
- `mode=RANK`: a microbatch is admitted on a rank by the forward of the rank's first stage on
  its way, which reserves everything the microbatch will hold there (`Problem.entry`); later
  forwards of that microbatch use the reservation. A rank then never holds a microbatch it cannot
  finish; with one direction the scheduler never deadlocks when one microbatch fits.
- `mode=GLOBAL`: the forward of stage 0 admits a microbatch on every rank at once, reserving what
  it will hold on each (`Problem.need`): never deadlocks when one microbatch fits, both
  directions of a bidirectional pipeline included.
- `mode=BANKER`: a forward starts when the rank stays *safe* afterwards (the banker's algorithm
  over the microbatches in flight on the rank: some order lets each get what it still needs from
  what the ones before it free). Packs like PLAIN, deadlocks far less; a deadlock gives None.
- `mode=PLAIN`: a forward starts whenever its activation fits; tighter packing, but it can
  deadlock (every rank waiting for memory), and then the result is None.
Serial scheme (`serial=True`): instead of time order, the ops in priority order, each placed on
its rank at the earliest time it can start (the lowest priority that fits, on any rank). A rank
may then wait while other work is ready, which an active schedule never does: under a tight limit
that wait is what lets the turn of a V (a deeper stage's forward on the same rank) find memory.
Given any plan's start times as priorities it gives that plan back, so every plan is reachable.
Overlap (`fuse=True`, pipelines with `overlap = true`): a chosen forward takes with it the ready
backward (B or I) of another microbatch of lowest priority, when the pair costs less than the two.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from .problem import B, F, I, Problem

INF = float("inf")
EPS = 1e-9


class Schedule(NamedTuple):
    """A list schedule: its makespan and each rank's instructions (tuples of op ids: one op, or a
    forward and a backward run overlapped)."""

    makespan: float
    rows: list[list[tuple[int, ...]]]


PLAIN, RANK, GLOBAL, BANKER = 0, 1, 2, 3
MODES = (RANK, GLOBAL, BANKER, PLAIN)


class _Banker:
    """Per rank: each microbatch in flight's [held, still to allocate] (the BANKER mode)."""

    def __init__(self, prob: Problem, limit: float):
        self.prob, self.limit = prob, limit
        self.flight: list[dict[int, list[float]]] = [{} for _ in range(prob.ranks)]
        self.held = list(prob.base)

    def fits(self, o: int, r: int) -> bool:
        prob, flight = self.prob, self.flight[r]
        a, g = prob.alloc[o], prob.group[o]
        free = self.limit - self.held[r] - a
        if free < 0:
            return False
        mine = flight.get(g) or [0.0, prob.need[prob.ops[o].direction][r]]
        states = [(rem, h) for key, (h, rem) in flight.items() if key != g]
        states.append((mine[1] - a, mine[0] + a))
        for rem, h in sorted(states):
            if rem > free:
                return False
            free += h
        return True

    def allocate(self, o: int, r: int) -> None:
        prob = self.prob
        state = self.flight[r].setdefault(prob.group[o], [0.0, prob.need[prob.ops[o].direction][r]])
        state[0] += prob.alloc[o]
        state[1] -= prob.alloc[o]
        self.held[r] += prob.alloc[o]

    def release(self, o: int, r: int) -> None:
        state = self.flight[r].get(self.prob.group[o])
        if state is None:
            return
        state[0] -= self.prob.free[o]
        self.held[r] -= self.prob.free[o]
        if state[0] <= EPS and state[1] <= EPS:
            del self.flight[r][self.prob.group[o]]


def list_schedule(prob: Problem, prio: list[float], mode: int = RANK, fuse: bool = False,
                  cutoff: float = INF, cap: float | None = None, serial: bool = False) -> Schedule | None:
    """The active schedule that `prio` (lower first) picks; None on a memory deadlock, or as soon
    as it is sure to end after `cutoff`. `cap` (<= the limit) holds memory lower than the limit:
    fewer microbatches in flight, a shallower warm-up. `serial`: the ops in priority order instead
    (see `_serial_pick`)."""
    n, p = prob.n, prob.ranks
    limit = min(prob.limit, INF if cap is None else cap) + EPS
    rank, dur, succs, kind = prob.rank, prob.dur, prob.succs, prob.kind
    alloc, free, entry = prob.alloc, prob.free, prob.entry
    waiting = [len(ps) for ps in prob.preds]
    ready = [0.0] * n
    cand: list[list[int]] = [[] for _ in range(p)]
    for o in range(n):
        if not waiting[o]:
            cand[rank[o]].append(o)
    free_at, held, committed = [0.0] * p, list(prob.base), list(prob.base)
    rows: list[list[tuple[int, ...]]] = [[] for _ in range(p)]
    cache: list[float | None] = [None] * p
    makespan, done = 0.0, 0

    need, first = prob.need, prob.first
    queue = [(prio[o], o) for ops in cand for o in ops] if serial else []  # the serial scheme's candidates
    placed = [False] * n  # the serial scheme: ops already in a row (a pair's backward stays queued)
    heapq.heapify(queue)
    fuse = fuse and prob.can_overlap
    banker = _Banker(prob, limit) if mode == BANKER else None

    memo: list[dict[int, bool]] = [{} for _ in range(p)]  # fits(o, r) until rank r's memory changes
    unlimited = limit == INF  # no limit and no cap: every op fits, `fits` is not asked

    def fits(o: int, r: int) -> bool:
        if kind[o] != F:
            return True
        known = memo[r].get(o)
        if known is None:
            known = memo[r][o] = fits_now(o, r)
        return known

    def fits_now(o: int, r: int) -> bool:
        if mode == RANK:
            return not entry[o] or committed[r] + entry[o] <= limit
        if mode == GLOBAL:
            return not first[o] or all(c + x <= limit for c, x in zip(committed, need[first[o] - 1]))
        if banker is not None:
            return banker.fits(o, r)
        return held[r] + alloc[o] <= limit

    def admit(o: int, r: int) -> None:
        if banker is not None:
            banker.allocate(o, r)
        elif mode == RANK:
            committed[r] += entry[o]
        elif mode == GLOBAL and first[o]:
            for q, x in enumerate(need[first[o] - 1]):
                if x:
                    committed[q] += x
                    cache[q] = None
                    memo[q].clear()

    while done < n:
        if serial:  # the lowest priority that can go, wherever and whenever it starts
            pick = _serial_pick(queue, fits, rank, placed)
            if pick < 0:
                return None
            r = rank[pick]
        else:  # the lowest priority among the ops that could start before C* on C*'s rank
            best, r_star = INF, -1
            for r in range(p):
                e = cache[r]
                if e is None:
                    e, fr = INF, free_at[r]
                    for o in cand[r]:
                        t = ready[o]
                        t = (t if t > fr else fr) + dur[o]
                        if t < e and (unlimited or kind[o] != F or fits(o, r)):
                            e = t
                    cache[r] = e
                if e < best:
                    best, r_star = e, r
            if r_star < 0 or best > cutoff:
                return None
            r, fr = r_star, free_at[r_star]
            pick, pick_prio = -1, INF
            for o in cand[r]:
                start = ready[o] if ready[o] > fr else fr
                if (start < best - EPS or start + dur[o] <= best + EPS) and prio[o] < pick_prio \
                        and (unlimited or fits(o, r)):
                    pick, pick_prio = o, prio[o]
        fr = free_at[r]
        start = ready[pick] if ready[pick] > fr else fr
        instr = (pick,)
        if fuse and kind[pick] == F:
            instr = _overlap_partner(prob, prio, cand[r], pick, start, ready)
        end = start + (dur[pick] if len(instr) == 1 else prob.pair_cost(*instr))
        if end > cutoff:
            return None
        for o in instr:
            cand[r].remove(o)
            placed[o] = True
            if kind[o] == F:
                admit(o, r)
                held[r] += alloc[o]
        for o in instr:
            held[r] -= free[o]
            committed[r] -= free[o]
            if banker is not None:
                banker.release(o, r)
        rows[r].append(instr)
        free_at[r], cache[r] = end, None
        memo[r].clear()
        makespan = end if end > makespan else makespan
        done += len(instr)
        for o in instr:
            for s, delay in succs[o]:
                t = end + delay
                if t > ready[s]:
                    ready[s] = t
                waiting[s] -= 1
                if not waiting[s]:
                    cand[rank[s]].append(s)
                    cache[rank[s]] = None
                    if serial:
                        heapq.heappush(queue, (prio[s], s))
    return Schedule(makespan, rows)


def _serial_pick(queue: list, fits, rank, placed) -> int:
    """The serial scheme: the candidate of lowest priority on any rank that fits (-1: none),
    taken off `queue` (a heap of (priority, op)). A rank may wait for it while other work is
    ready, which the active scheme never does; under a memory limit that wait can be what lets a
    deeper stage's forward in (the turn of a V)."""
    blocked = []
    pick = -1
    while queue:
        item = heapq.heappop(queue)
        if placed[item[1]]:
            continue
        if fits(item[1], rank[item[1]]):
            pick = item[1]
            break
        blocked.append(item)
    for item in blocked:
        heapq.heappush(queue, item)
    return pick


def _overlap_partner(prob: Problem, prio, cands, forward: int, start: float, ready) -> tuple[int, ...]:
    """(forward, backward) when a ready backward of another microbatch gains from the pair."""
    best, best_prio = -1, INF
    for o in cands:
        if prob.kind[o] in (B, I) and ready[o] <= start + EPS and prio[o] < best_prio \
                and prob.group[o] != prob.group[forward] and prob.pair_gain(forward, o) > EPS:
            best, best_prio = o, prio[o]
    return (forward,) if best < 0 else (forward, best)
