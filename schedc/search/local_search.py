"""`schedule = search`: a seeded local search over list-scheduler priorities.

    seeds:  every handcrafted family that runs on this placement, evaluated as it is written;
            a handful of priority rules (`rules`: backward first, forward first, microbatch order,
            ...; under a memory limit also periodic times and the start times of the plans found)
    search: perturb the best priorities (a few ops' keys moved, or two ops' keys swapped), list
            schedule them (`list_scheduler`, every memory mode), keep what is no worse; restart
            from a good start now and then. Under a memory limit two such climbs race (`_Chain`):
            the active scheme's and the serial scheme's, in turns for `RACE_SHARE` of the budget,
            then the one that got further alone; a last sixth moves instructions in the best rows.

Determinism: the budget is counted in work, not wall time: `search_time` seconds buy a number of
list schedules computed from the pipeline's size at a fixed rate (`EVALS_PER_OP_SECOND`), so a
file gives the same plan on every machine and run (every rank of `schedc run` finds the same
one); `seed` changes the random generator. On a slower or busy machine it takes longer.
The result is never worse than the best family seed, since the seeds are candidates.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

from ..dag import Dag
from ..errors import SchedError
from ..ir import Instr, OpKind
from ..lang.spec import FAMILIES, FAMILY_PLACEMENT, OVERLAP_FAMILIES, SPLIT_FAMILIES, PipelineSpec
from .evaluate import evaluate_rows, start_times
from .list_scheduler import BANKER, MODES, PLAIN, list_schedule
from .bound import lower_bound
from .problem import B, F, I, W, Problem, build_problem
from .progress import Ticker
from .rules import memory_caps, periodic_priorities, rule_priorities

RESTART_AFTER = 200  # list schedules without a better one before a restart
_SHIFTS = (-6, -4, -3, -2, -1, 1, 2, 3, 4, 6)
RACE_SHARE = 0.3  # of the list schedules left after the starts: the two climbs take turns
RACE_CHUNK = 50  # list schedules per turn
SERIAL_STARTS = 2  # active starts (besides the best plan) the serial phase also starts from
SERIAL_MODES = (BANKER, PLAIN)  # PLAIN last: the one mode without a limit
EVALS_PER_OP_SECOND = 120_000  # list schedules per second x ops, as measured on the reference machine (2 shared cores)


@dataclass(frozen=True)
class SearchResult:
    """What the search found: per-rank compute ops, the pairs to overlap, and how it got there."""

    rows: tuple[tuple[Instr, ...], ...]
    pairs: frozenset
    makespan: float
    evaluations: int
    seconds: float
    found_by: str
    proven_bound: float | None = None  # schedule = optimal: the solver's proven lower bound
    interrupted: bool = False  # Ctrl-C stopped it: the best plan so far, not proven (progress.py)


def search_order(spec: PipelineSpec, dag: Dag | None = None) -> SearchResult:
    """The best order found for `spec` within its `search_time` budget, with seed `spec.seed`."""
    began = time.perf_counter()
    prob = build_problem(spec, dag)
    rng = random.Random(spec.seed)
    floor = lower_bound(spec).value
    state = _Search(prob, rng, spec.overlap, float("inf"), None, "nothing")
    state.floor, state.ticker = floor + 1e-9, Ticker("search", floor, began)  # at the floor: stop
    budget = search_budget(spec, prob)
    interrupted = False
    try:
        for name, rows in family_seeds(spec, prob):
            state.offer_rows(evaluate_rows(prob, rows), rows, f"the {name} family")
        if budget or state.best_rows is None:  # no budget: the best family's plan (one try if none)
            budget = max(budget, 1)
            state.run(budget - budget // 6)  # work, not time, ends the search (the docstring says why)
            state.polish(budget)
    except KeyboardInterrupt:  # Ctrl-C: the best plan so far, marked (progress.py)
        if state.best_rows is None:
            raise
        interrupted = True
    if state.best_rows is None:
        raise SchedError([])  # the caller checked feasibility first; this is a bug guard
    found_by = f"{state.found_by}; interrupted, not proven" if interrupted else state.found_by
    return SearchResult(to_instrs(prob, state.best_rows), _pairs(prob, state.best_rows), state.best,
                        state.evaluations, time.perf_counter() - began, found_by, interrupted=interrupted)


MANY_MICROBATCHES = 48  # per direction: above this a list schedule costs more per op (see below)


def search_budget(spec: PipelineSpec, prob: Problem) -> int:
    """List schedules that `search_time` buys. One costs about n ops x max(1, the microbatches a
    rank can have ready at once / MANY_MICROBATCHES) (its scans over the ready ops; measured: 6 us
    per op at 32 microbatches, 104 at 1,000), so above MANY_MICROBATCHES a schedule counts for
    more and the floor of 20 falls with it, to 0 where the budget buys none (the search then
    keeps the best family's plan: see `search_order`)."""
    weight = max(1.0, spec.microbatches_per_direction / MANY_MICROBATCHES)
    floor = 20 if weight == 1.0 else int(20 / weight)
    return max(floor, int(spec.search_time * EVALS_PER_OP_SECOND / (max(prob.n, 1) * weight)))


class _Chain:
    """One climb of the search: its starts (best first), where it stands (value, priorities,
    mode, rows), the best value it reached, and list schedules since it last improved."""

    def __init__(self, starts: list):
        self.starts = sorted(starts, key=lambda s: s[0])
        self.value, self.prio, self.mode, self.rows, _name = self.starts[0]
        self.best, self.since_better = self.value, 0


class _Search:
    """The local search state: the incumbent (priorities, mode) and the best rows seen."""

    def __init__(self, prob: Problem, rng: random.Random, fuse: bool, best, best_rows, found_by):
        self.prob, self.rng, self.fuse = prob, rng, fuse
        self.best, self.best_rows, self.found_by = best, best_rows, found_by
        self.evaluations = 0
        self.floor = 0.0
        self.ticker: Ticker | None = None

    def offer_rows(self, value: float | None, rows, how: str) -> None:
        """Keep `rows` when they evaluate (`value`) shorter than the best so far."""
        if value is not None and value < self.best - 1e-9:
            self.best, self.best_rows, self.found_by = value, rows, how

    def _try(self, prio, mode: tuple[int, float | None, bool], cutoff: float):
        self.evaluations += 1
        if self.ticker is not None:
            self.ticker.tick(self.best)
        return list_schedule(self.prob, prio, mode[0], self.fuse, cutoff, mode[1], mode[2])

    def _offer(self, schedule, how: str) -> None:
        if schedule is not None and schedule.makespan < self.best - 1e-9:
            self.best, self.best_rows, self.found_by = schedule.makespan, schedule.rows, how

    def run(self, budget: int) -> None:
        """Two climbs race (`_Chain`): the active scheme from the priority rules, the serial one
        from the periodic rules and the plans found; the one that got further takes the rest."""
        self.budget = budget
        if self.best <= self.floor:  # a family's plan is at the lower bound: nothing to find
            return
        starts = []
        for name, prio in rule_priorities(self.prob):
            for mode in (MODES if self.prob.limit < float("inf") else MODES[:1]):
                self._start(starts, name, prio, (mode, None, False))
        if not starts:
            return
        starts.sort(key=lambda s: s[0])
        for _value, prio, (mode, _cap, _serial), _rows, name in starts[:2]:  # the best two, held lower
            for cap in memory_caps(self.prob):
                self._start(starts, name, prio, (mode, cap, False))
        serial = self._serial_starts(starts) if self.prob.limit < float("inf") else []  # else: active is dominant
        chains = [_Chain(c) for c in (starts, serial) if c]
        race_end = self.evaluations + int((budget - self.evaluations) * RACE_SHARE)
        turn = 0
        while self.evaluations < budget and self.best > self.floor:
            if self.evaluations < race_end:  # the race: each chain a chunk in turn
                self._advance(chains[turn % len(chains)], min(race_end, self.evaluations + RACE_CHUNK))
                turn += 1
            else:  # the rest to the chain that got furthest (the active one on a tie)
                self._advance(min(chains, key=lambda c: c.best), budget)

    def _serial_starts(self, starts: list) -> list:
        """Starts in the serial modes: the periodic rules, and the best plans so far with each
        op's start time as its priority (which gives the plan back when the mode admits it)."""
        rules = periodic_priorities(self.prob)
        for rows in [self.best_rows] + [s[3] for s in starts[:SERIAL_STARTS]]:
            if rows is not None:
                rules.append(("the start times of a plan found", start_times(self.prob, rows)))
        out: list = []
        for name, prio in rules:
            for mode in SERIAL_MODES:
                self._start(out, name, prio, (mode, None, True))
        return out

    def _advance(self, chain: "_Chain", until: int) -> None:
        """Climb `chain` until `until` list schedules in all: perturb its priorities, keep what
        is no worse; restart from another of its good starts when stuck."""
        how = "local search" + (", serial" if chain.mode[2] else "")
        while self.evaluations < until and self.best > self.floor:
            candidate = self._perturb(chain.prio, chain.rows)
            schedule = self._try(candidate, chain.mode, chain.value + 1e-9)
            if schedule is not None and schedule.makespan <= chain.value + 1e-9:
                better = schedule.makespan < chain.value - 1e-9
                chain.since_better = 0 if better else chain.since_better + 1
                chain.value, chain.prio, chain.rows = schedule.makespan, candidate, schedule.rows
                chain.best = min(chain.best, chain.value)
                self._offer(schedule, how)
            else:
                chain.since_better += 1
            if chain.since_better > RESTART_AFTER:  # stuck: restart from another good start
                chain.value, start, chain.mode, chain.rows, _name = \
                    chain.starts[self.rng.randrange(min(len(chain.starts), 8))]
                chain.prio, chain.since_better = self._perturb(start, chain.rows, strength=0.3), 0

    def _start(self, starts: list, name: str, prio, mode) -> None:
        if starts and self.evaluations >= self.budget:  # a large pipeline: fewer starts
            return
        schedule = self._try(prio, mode, float("inf"))
        how = f"the list scheduler ({name}{'' if mode[1] is None else f', memory held to {mode[1]:g}'})"
        self._offer(schedule, how)
        if schedule is not None:
            starts.append((schedule.makespan, prio, mode, schedule.rows, name))

    def polish(self, budget: int) -> None:
        """Order moves on the best rows: one instruction moved (or two swapped) up to 6 places on its rank, kept
        when the step is no longer (memory and deadlock checked by the evaluator)."""
        if self.best_rows is None:
            return
        rows = [list(row) for row in self.best_rows]
        rng, current = self.rng, self.best
        while self.evaluations < budget and self.best > self.floor:
            r = rng.randrange(len(rows))
            if len(rows[r]) < 2:
                self.evaluations += 1
                continue
            i = rng.randrange(len(rows[r]))
            j = min(len(rows[r]) - 1, max(0, i + rng.choice(_SHIFTS)))
            moved = list(rows[r])
            if rng.random() < 0.3:
                moved[i], moved[j] = moved[j], moved[i]
            else:
                moved.insert(j, moved.pop(i))
            trial = rows[:r] + [moved] + rows[r + 1:]
            self.evaluations += 1
            if self.ticker is not None:
                self.ticker.tick(self.best)
            value = evaluate_rows(self.prob, trial)
            if value is not None and value <= current + 1e-9:
                rows, current = trial, value
                if value < self.best - 1e-9:
                    self.best, self.best_rows, self.found_by = value, [list(x) for x in rows], "local search on the order"

    def _perturb(self, prio: list[float], rows, strength: float = 0.0) -> list[float]:
        """New priorities: noise on all (`strength`), an op moved before one a few places ahead
        of it in the current schedule, a microbatch's ops from some stage on moved later or
        earlier than the next one's, two ops of a rank swapped, or a few ops' keys moved."""
        rng, n = self.rng, len(prio)
        out = list(prio)
        if strength:
            return [x + rng.gauss(0, strength) for x in out]
        choice = rng.random()
        row = rows[rng.randrange(len(rows))]
        if choice < 0.2 and len(row) > 1:
            i = rng.randrange(len(row) - 1)
            a, b = row[i][0], row[min(len(row) - 1, i + 1 + rng.randrange(4))][0]
            out[b] = out[a] - 1e-3 * (1 + rng.random())
            return out
        if choice < 0.35:  # a microbatch overtaken (or overtaking) from some stage on
            o = rng.randrange(n)
            group, stage, shift = self.prob.group[o], self.prob.ops[o].stage, rng.choice((-1.5, 1.5, 2.5))
            for q in self._group_ops(group):
                if self.prob.ops[q].stage >= stage:
                    out[q] += shift
            return out
        if choice < 0.65:
            a = rng.randrange(n)
            same_rank = [o for o in self._rank_ops(self.prob.rank[a]) if o != a]
            b = same_rank[rng.randrange(len(same_rank))] if same_rank else a
            out[a], out[b] = out[b], out[a]
            return out
        for _ in range(1 + rng.randrange(3)):
            out[rng.randrange(n)] += rng.gauss(0, 1.5)
        return out

    def _group_ops(self, group: int) -> list[int]:
        if not hasattr(self, "_by_group"):
            self._by_group: dict[int, list[int]] = {}
            for o, g in enumerate(self.prob.group):
                self._by_group.setdefault(g, []).append(o)
        return self._by_group[group]

    def _rank_ops(self, r: int) -> list[int]:
        if not hasattr(self, "_by_rank"):
            self._by_rank = [[o for o in range(self.prob.n) if self.prob.rank[o] == q]
                             for q in range(self.prob.ranks)]
        return self._by_rank[r]


# ---- seeds and conversions -----------------------------------------------------------------------

def family_seeds(spec: PipelineSpec, prob: Problem):
    """(family, rows) for each family that runs on `spec`'s placement, as rows of op-id tuples."""
    from ..passes import fuse_overlap
    from ..schedules import build_order

    for family in FAMILIES:
        if FAMILY_PLACEMENT[family] != spec.placement or (family in SPLIT_FAMILIES and not spec.split_backward):
            continue
        variant = replace(spec, schedule=family, split_backward=family in SPLIT_FAMILIES,
                          overlap=family in OVERLAP_FAMILIES and spec.overlap, order=None)
        try:
            rows = fuse_overlap(build_order(variant), variant.overlap)
        except SchedError:
            continue
        yield family, [_as_ids(prob, row) for row in rows]


def _as_ids(prob: Problem, row) -> list[tuple[int, ...]]:
    """Instructions as op-id tuples in `prob`'s op set (a full B becomes I then W when split)."""
    out = []
    for instr in row:
        if instr.kind is OpKind.OVERLAP:
            forward, backward = instr.parts
            out.append((prob.index[forward], prob.index[_split_part(prob, backward)]))
            if backward.kind is OpKind.B and prob.spec.split_backward:
                out.append((prob.index[backward.with_kind(OpKind.W)],))
        elif instr.kind is OpKind.B and prob.spec.split_backward:
            out += [(prob.index[instr.with_kind(OpKind.I)],), (prob.index[instr.with_kind(OpKind.W)],)]
        else:
            out.append((prob.index[instr],))
    return out


def _split_part(prob: Problem, backward: Instr) -> Instr:
    return backward.with_kind(OpKind.I) if prob.spec.split_backward and backward.kind is OpKind.B else backward


def to_instrs(prob: Problem, rows) -> tuple[tuple[Instr, ...], ...]:
    """Per-rank compute ops (pairs written as two adjacent ops, forward first)."""
    return tuple(tuple(prob.ops[o] for instr in row for o in instr) for row in rows)


def to_plan_rows(prob: Problem, rows) -> tuple[tuple[Instr, ...], ...]:
    """Per-rank compute instructions as a hand-written order writes them (pairs as F&B tokens)."""
    return tuple(tuple(prob.ops[i[0]] if len(i) == 1 else Instr.overlap(prob.ops[i[0]], prob.ops[i[1]])
                       for i in row) for row in rows)


def _pairs(prob: Problem, rows) -> frozenset:
    return frozenset((prob.ops[i[0]], prob.ops[i[1]]) for row in rows for i in row if len(i) == 2)
