"""The exact search for a pair's best lane orders: best-first branch and bound (A*) over the
orders of issue, with dominance on states.

The search steps the pair's event simulation (fast.py, pair.py's model) and branches where a lane
falls free: which of its parts it issues next. The candidates on the compute lane are the forward
chain's next compute part, the backward chain's next compute part and any W part not yet issued
whose B part is done or is a communication part (a part may be issued before it is ready: the
lane then waits for it, as the order-of-issue model allows); on the communication lane, each
chain's next communication part. Nothing else is cut from the orders, except:
- W parts issued back to back go in the order their B parts finish (the order they become ready):
  such a run ends no later in that order (a work-conserving lane with release times) and nothing
  waits for a W part;
- W parts of one name (one duration, one per layer) are issued in the order their B parts finish:
  swapping two of them between their slots never makes either start later;
- states whose lower bound (`fast.state_bound`) is at or above the best makespan found;
- dominance: at a branch point a state's key is (forward parts done, B parts done, W parts done,
  the part each lane holds, the last W part issued when the compute lane's last issue was one)
  and its values (time, the end of the running communication part, the time the running compute
  part would end if slowed all the way). A state is dropped when another with the same key is no
  later in all three (a Pareto front per key): it continues no later, with no more work left.
States are expanded in order of lower bound (ties: the deepest first), so the search ends, proven,
as soon as the least bound left reaches the best makespan found; the best starts from the seeds
(DeepSeek's order, the sequential pair) and improves by a greedy completion of every 64th state
expanded. The lower bounds are proofs (fast.py, bound.py). The two W rules and the dominance rest
on exchange arguments and on the model's monotonicity (a state that starts its continuation no
later, with no more work left, never ends later), argued rather than proven: a test checks the
search against brute force over all lane orders on small chunks (and about 50,000 random chunks
of up to 11 parts agreed while it was built). The budget is counted in states expanded
(`NODES_PER_SECOND` per second of budget), so a search ends the same on every machine.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .chunk import COMM, COMPUTE, PairProblem
from .fast import START, Tables, advance, state_bound
from .pair import EPS

NODES_PER_SECOND = 25_000  # states expanded per second of budget (measured: benchmarks/overlap_model.py)
TOLERANCE = 1e-9  # relative: a makespan better by less than this is not an improvement
DIVE_EVERY = 64  # a greedy completion from every 64th state expanded


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The best lane orders found (part ids), their makespan, whether the search proved them best
    (it finished within its budget), a proven lower bound on the optimum (the makespan when
    proven; else the least bound of the states left open, or the floor it was given), the states
    it expanded."""

    compute: tuple[int, ...]
    comm: tuple[int, ...]
    makespan: float
    proven: bool
    bound: float
    nodes: int


def _candidates(tb: Tables, lane: int, state: tuple) -> list[int]:
    """The parts `lane` may issue next, in the order the search tries them: ready parts first
    (the longer the chain behind them, the sooner), then parts the lane would wait for."""
    t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw = state
    chains = []
    if lane == COMPUTE:
        nxt = ((tb.nc_f[fd], tb.fid, tb.rest_f), (tb.nc_b[bd], tb.bid, tb.tail_b))
    else:
        nxt = ((tb.nm_f[fd], tb.fid, tb.rest_f), (tb.nm_b[bd], tb.bid, tb.tail_b))
    for k, ids, tail in nxt:
        if k < len(ids):
            chains.append((not tb.ready(ids[k], fd, bd), -tail[k], ids[k]))
    if lane == COMPUTE:
        for j, w in enumerate(tb.wid):
            if wmask >> j & 1 or j <= lastw:
                continue
            if tb.wsame[j] >= 0 and not wmask >> tb.wsame[j] & 1:
                continue  # W parts of one name go layer by layer
            waits = bd <= tb.wpred[j]
            if waits and not tb.wpred_comm[j]:
                continue  # its B part is on this lane and not issued yet
            chains.append((waits, 0.0, w))
    chains.sort(key=lambda x: (x[0], x[1]))
    return [part for _, _, part in chains]


def _issue(tb: Tables, lane: int, state: tuple, part: int) -> tuple:
    """`state` with `part` issued on `lane` (it starts at once when ready)."""
    t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw = state
    if lane == COMM:
        return (t, fd, bd, wmask, wwork, c, crem, part, tb.work[part], lastw)
    last = tb.pos[part] if tb.kind[part] == 2 else -1
    return (t, fd, bd, wmask, wwork, part, tb.work[part], m, mrem, last)


def _insert(fronts: dict, state: tuple, slow: float):
    """Add `state` to its key's Pareto front and return its entry [t, compute end, comm end,
    alive]; None when an entry already there is no later in all three. Entries it beats are
    marked dead and leave the front."""
    t, fd, bd, wmask, _, c, crem, m, mrem, lastw = state
    key = (fd, bd, wmask, c, m, lastw)
    mine = [t, t + crem / slow if c >= 0 else 0.0, t + mrem if m >= 0 else 0.0, True]
    tol = EPS * max(1.0, t) * 16
    front = fronts.setdefault(key, [])
    for o in front:
        if o[0] <= mine[0] + tol and o[1] <= mine[1] + tol and o[2] <= mine[2] + tol:
            return None
    keep = []
    for o in front:
        if mine[0] <= o[0] and mine[1] <= o[1] and mine[2] <= o[2]:
            o[3] = False
        else:
            keep.append(o)
    keep.append(mine)
    fronts[key] = keep
    return mine


def _path(records: list, index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The lane orders along the chain of records ending at `index`."""
    lanes: tuple[list[int], list[int]] = ([], [])
    while index >= 0:
        parent, lane, part = records[index]
        lanes[lane].append(part)
        index = parent
    return tuple(reversed(lanes[COMPUTE])), tuple(reversed(lanes[COMM]))


def _better(value: float, best: float) -> bool:
    return value < best - TOLERANCE * max(1.0, best)


class _Search:
    """The search's open states, fronts and records (each issue: parent record, lane, part)."""

    def __init__(self, problem: PairProblem, seeds, floor: float):
        self.tb = Tables(problem)
        self.compute, self.comm, self.best = min(seeds, key=lambda s: s[2])
        self.best_record = None
        self.floor = floor
        self.records: list = []
        self.fronts: dict = {}
        self.heap: list = []

    def push(self, outcome, record: int, bound: float, depth: int) -> None:
        """Keep a simulated outcome: a better complete schedule as the best; a branch point as an
        open state unless dominated or bounded out."""
        if outcome[0] == "deadlock":
            return
        if outcome[0] == "done":
            if _better(outcome[1], self.best):
                self.best, self.best_record = outcome[1], record
            return
        state = outcome[2]
        entry = _insert(self.fronts, state, self.tb.slow)
        if entry is None:
            return
        bound = max(bound, state_bound(self.tb, state))
        if _better(bound, self.best):
            heapq.heappush(self.heap, (bound, -depth, len(self.records), record, outcome, entry))

    def expand(self, bound: float, depth: int, record: int, outcome) -> None:
        """Issue each candidate of the branch point `outcome` and keep what follows."""
        _, lane, state = outcome
        for part in _candidates(self.tb, lane, state):
            self.records.append((record, lane, part))
            self.push(advance(self.tb, _issue(self.tb, lane, state, part)), len(self.records) - 1,
                      bound, depth + 1)

    def dive(self, outcome, record: int) -> None:
        """Complete a state greedily (each lane issues its first candidate); keep it if better."""
        while outcome[0] == "decide":
            _, lane, state = outcome
            candidates = _candidates(self.tb, lane, state)
            if not candidates:
                return
            self.records.append((record, lane, candidates[0]))
            record = len(self.records) - 1
            outcome = advance(self.tb, _issue(self.tb, lane, state, candidates[0]))
        if outcome[0] == "done" and _better(outcome[1], self.best):
            self.best, self.best_record = outcome[1], record

    def done(self) -> bool:
        """Whether no open state can beat the best, or the best reaches the proven floor."""
        return not self.heap or not _better(self.heap[0][0], self.best) \
            or not _better(self.floor, self.best)


def search_best(problem: PairProblem, seeds, max_nodes: int, floor: float = 0.0) -> SearchResult:
    """The best lane orders of `problem` (module docstring): starts from the best of `seeds`
    ((compute ids, comm ids, makespan) each), ends when the best reaches `floor` (a proven lower
    bound), when no open state can beat it (proven), or after `max_nodes` states (not proven)."""
    search = _Search(problem, seeds, floor)
    search.push(advance(search.tb, START), -1, floor, 0)
    nodes = 0
    while not search.done() and nodes < max_nodes:
        bound, negdepth, _, record, outcome, entry = heapq.heappop(search.heap)
        if not entry[3]:
            continue  # dominated since it was kept
        nodes += 1
        if nodes % DIVE_EVERY == 1:
            search.dive(outcome, record)
        search.expand(bound, -negdepth, record, outcome)
    compute, comm = search.compute, search.comm
    if search.best_record is not None:
        compute, comm = _path(search.records, search.best_record)
    proven = search.done()
    # every schedule not yet found continues a state left open (or one dominated by it)
    bound = search.best if proven else max(floor, min(search.best, search.heap[0][0]))
    return SearchResult(compute, comm, search.best, proven, bound, nodes)
