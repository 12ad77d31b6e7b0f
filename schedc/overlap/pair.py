"""The evaluator of a pair: given the order of issue on each lane, when every part runs.

The model: two lanes per rank, a compute lane (one compute part at a time) and a communication
lane (one communication part at a time). Each lane issues its parts in its given order; a part
starts as soon as its predecessor (chunk.py) is done and its lane is free, never earlier and never
later. While any communication part runs, a running compute part progresses at rate 1 - s
(s = comm_share: its remaining work stretches); otherwise at rate 1. Communication parts are never
slowed. `simulate_lanes` is a small event simulation of exactly this (the reference the search is
cross-checked against); `evaluate_pair` is the same on part labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from ..errors import Diagnostic, SchedError
from .chunk import COMM, COMPUTE, LANE_NAMES, Chunk, PairProblem, build_problem

EPS = 1e-12  # relative: two events closer than this (times the clock) happen together


class Slice(NamedTuple):
    """One part on its lane: label, lane ("compute" or "comm"), start, end."""

    label: str
    lane: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class PairSchedule:
    """A pair's two-lane schedule: the order of issue on each lane (labels), its makespan, the
    fraction of the communication time that ran while some compute ran (`hidden_comm`; 0 when the
    pair has no communication) and every part's slice, in order of start."""

    compute: tuple[str, ...]
    comm: tuple[str, ...]
    makespan: float
    hidden_comm: float
    slices: tuple[Slice, ...]


@dataclass(frozen=True, slots=True)
class LaneRun:
    """What `simulate_lanes` returns: per part id its start and end; the makespan; the time during
    which a communication part and a compute part ran together."""

    start: tuple[float, ...]
    end: tuple[float, ...]
    makespan: float
    overlap: float


def _start_ready(problem: PairProblem, lanes, pos, running, remaining, done, start, t) -> None:
    """Start each free lane's next part when its predecessor is done."""
    for lane in (COMPUTE, COMM):
        if running[lane] >= 0 or pos[lane] == len(lanes[lane]):
            continue
        part = lanes[lane][pos[lane]]
        before = problem.pred[part]
        if before < 0 or done[before]:
            running[lane], remaining[lane], start[part] = part, problem.work[part], t
            pos[lane] += 1


def _deadlock(problem: PairProblem, lanes, pos) -> SchedError:
    waiting = [problem.labels[lanes[k][pos[k]]] for k in (COMPUTE, COMM) if pos[k] < len(lanes[k])]
    return SchedError([Diagnostic(
        f"the lane orders deadlock: {' and '.join(waiting)} each wait for a part that the other "
        "lane issues only later")])


def simulate_lanes(problem: PairProblem, compute: Sequence[int], comm: Sequence[int]) -> LaneRun:
    """Run the pair with `compute` and `comm` as the lanes' orders of issue (part ids); each must
    hold exactly its lane's parts. Raises `SchedError` when the orders deadlock (each lane waits
    for a part the other lane issues later)."""
    lanes = (tuple(compute), tuple(comm))
    n = len(problem.work)
    start, end = [math.nan] * n, [math.nan] * n
    done = [False] * n
    pos, running, remaining = [0, 0], [-1, -1], [0.0, 0.0]
    slow = 1.0 - problem.share
    t = overlap = 0.0
    while True:
        _start_ready(problem, lanes, pos, running, remaining, done, start, t)
        if running == [-1, -1]:
            if pos[COMPUTE] == len(lanes[COMPUTE]) and pos[COMM] == len(lanes[COMM]):
                return LaneRun(tuple(start), tuple(end), t, overlap)
            raise _deadlock(problem, lanes, pos)
        rate = slow if running[COMM] >= 0 else 1.0
        need = [remaining[COMPUTE] / rate if running[COMPUTE] >= 0 else math.inf,
                remaining[COMM] if running[COMM] >= 0 else math.inf]
        dt = min(need)
        if running[COMPUTE] >= 0 and running[COMM] >= 0:
            overlap += dt
        t += dt
        for lane in (COMPUTE, COMM):
            if running[lane] < 0:
                continue
            if need[lane] - dt <= EPS * max(1.0, t):
                part = running[lane]
                end[part], done[part], running[lane] = t, True, -1
            else:
                remaining[lane] -= (rate if lane == COMPUTE else 1.0) * dt


def _ids(problem: PairProblem, order: Sequence[str], lane: int) -> tuple[int, ...]:
    """Part ids of the labels in `order`, checked: every part of `lane` exactly once, each after
    its predecessor when that is on the same lane."""
    index = problem.index()
    unknown = [x for x in order if x not in index]
    if unknown:
        raise SchedError([Diagnostic(f"unknown parts in the {LANE_NAMES[lane]} order: {', '.join(unknown)}")])
    ids = tuple(index[x] for x in order)
    expected = {i for i in range(len(problem.work)) if problem.lane[i] == lane}
    if sorted(ids) != sorted(expected):
        missing = sorted(problem.labels[i] for i in expected - set(ids))
        extra = sorted({problem.labels[i] for i in ids if i not in expected or ids.count(i) > 1})
        raise SchedError([Diagnostic(f"the {LANE_NAMES[lane]} order must hold each of its lane's parts "
                                     f"once; missing: {', '.join(missing) or '-'}; wrong or repeated: "
                                     f"{', '.join(extra) or '-'}")])
    seen: set[int] = set()
    for i in ids:
        before = problem.pred[i]
        if before >= 0 and problem.lane[before] == lane and before not in seen:
            raise SchedError([Diagnostic(f"{problem.labels[i]} comes before {problem.labels[before]} "
                                         f"in the {LANE_NAMES[lane]} order, but depends on it")])
        seen.add(i)
    return ids


def schedule_of(problem: PairProblem, compute: Sequence[int], comm: Sequence[int]) -> PairSchedule:
    """The `PairSchedule` of lane orders given as part ids (simulated by `simulate_lanes`)."""
    run = simulate_lanes(problem, compute, comm)
    comm_time = math.fsum(problem.work[i] for i in comm)
    hidden = run.overlap / comm_time if comm_time > 0 else 0.0
    slices = sorted((Slice(problem.labels[i], LANE_NAMES[problem.lane[i]], run.start[i], run.end[i])
                     for i in range(len(problem.work))), key=lambda s: (s.start, s.lane, s.end))
    return PairSchedule(tuple(problem.labels[i] for i in compute), tuple(problem.labels[i] for i in comm),
                        run.makespan, min(1.0, hidden), tuple(slices))


def evaluate_pair(chunk: Chunk, compute_order: Sequence[str], comm_order: Sequence[str]) -> PairSchedule:
    """The schedule of one forward and one backward chunk of `chunk` with the given orders of issue
    (labels such as `F0.attention`): each part starts when its predecessor is done and its lane is
    free; compute runs at rate 1 - comm_share while communication runs. Raises `SchedError` for an
    order that misses or repeats a part, puts a part before its same-lane predecessor, or deadlocks."""
    problem = build_problem(chunk)
    return schedule_of(problem, _ids(problem, compute_order, COMPUTE), _ids(problem, comm_order, COMM))


def sequential_order(problem: PairProblem) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The forward chunk, then the backward chunk, each W part issued right after its B part (and
    after W parts issued before it): lane orders as part ids."""
    after: dict[int, list[int]] = {}
    for w in problem.weight:
        after.setdefault(problem.pred[w], []).append(w)
    sequence = list(problem.forward)
    for b in problem.backward:
        sequence += [b, *after.get(b, [])]
    return (tuple(i for i in sequence if problem.lane[i] == COMPUTE),
            tuple(i for i in sequence if problem.lane[i] == COMM))
