"""The split that minimizes the simulated step of the chosen schedule, under the memory limit.

The simulated makespan does not decompose by stage, so this is a branch and bound over splits,
in stage order, scored by the simulator:
- the family's plan is compiled once (its order does not depend on costs); each candidate is
  the same plan simulated with the candidate's stage costs (`Evaluator`);
- memory per rank is the simulator's peak of activations held (from the plan, so it differs
  between 1F1B, interleaved, ZB and V schedules) plus the parameters of every stage replica the
  rank holds;
- a partial split is cut off when a lower bound on any completion exceeds the best makespan
  found: the forward chain before the next stage, plus the microbatches' work on the slowest
  remaining stage (the exact min-max table of the remaining layers), plus, without a split
  backward, the backward chain back to the first stage; with one stage per rank, the exact
  fill-time table (the chain to each stage plus its microbatches' work); each stage's round trip
  before its first backward; each rank's work on the stages assigned so far; the water level of
  the remaining work poured onto the ranks holding the remaining stages;
- the incumbent starts as the min-max bottleneck split, so the search only ever improves on it;
  hill-climbing from it (and, where a rank holds several stages and the bounds cut little, from
  rank-balanced seeds and seeded random kicks) finds a good incumbent early.

Within the candidate budget the result is exact: `exact` says every split that could beat it was
simulated. Ties go to the smaller bottleneck, then the smaller peak memory, then the
lexicographically smaller bounds. tests/test_partition_search.py checks against enumeration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import Diagnostic, SchedError
from .evaluate import Evaluation, Evaluator, uniform_start
from .minmax import INF, lexmin_split, prefix_sums, suffix_table
from .problem import Bounds, PartitionProblem, is_valid

__all__ = ["DEFAULT_BUDGET", "Evaluation", "Evaluator", "SplitChoice", "SplitSearch", "choose_split",
           "smallest_memory"]

DEFAULT_BUDGET = 2000
_TOL = 1e-9


@dataclass(frozen=True)
class SplitChoice:
    """The chosen split, the min-max bottleneck split it started from, how many splits were
    simulated, whether the choice is proven optimal, and a lower bound on any split's step."""

    best: Evaluation | None
    minmax: Evaluation | None
    evaluated: int
    exact: bool
    lower_bound: float
    interrupted: bool = False  # Ctrl-C: the best of the splits simulated so far, not proven


def choose_split(problem: PartitionProblem, budget: int = DEFAULT_BUDGET,
                 evaluator: Evaluator | None = None) -> SplitChoice:
    """The split of `problem` with the least simulated makespan within the memory limits."""
    ev = evaluator or Evaluator(problem)
    choice = SplitSearch(problem, ev, budget).run()
    if choice.best is None and choice.interrupted:
        raise KeyboardInterrupt  # Ctrl-C before any split that fits: nothing to report
    if choice.best is None:
        raise _no_split_fits(problem, ev, choice)
    return choice


def smallest_memory(problem: PartitionProblem, ev: Evaluator) -> tuple[float, bool]:
    """The least, over splits, of the largest per-stage memory (parameters plus the
    activations the schedule holds for it); exact when each rank holds one stage, else a lower
    bound on the per-rank peak. Returns (value, exact)."""
    layers = problem.model.layers
    act, params = prefix_sums([x.activation for x in layers]), prefix_sums([x.params for x in layers])

    def memory(s: int, i: int, j: int) -> float:
        held = max(h for _d, _r, h in ev.inflight[s])
        return params[j] - params[i] + held * (act[j] - act[i])

    table = suffix_table(len(layers), problem.num_stages, memory, None, problem.min_layers, problem.pins)
    spec = problem.spec
    return table[0][0], spec.chunks == 1 and spec.directions == 1


def _no_split_fits(problem: PartitionProblem, ev: Evaluator, choice: SplitChoice) -> SchedError:
    value, exact = smallest_memory(problem, ev)
    limits = [x for x in problem.devices.limits if x is not None]
    limit = f"{min(limits):g}" if len(set(limits)) == 1 else "the per-rank limits"
    if not choice.exact:
        why = (f"none of the {choice.evaluated} splits simulated fits (the search stopped at its "
               "budget); raise the budget or the limit")
    else:
        what = "the smallest any split reaches is" if exact else "every split needs at least"
        why = (f"{what} {value:g} on some rank (parameters plus the activations the schedule "
               "holds); raise the limit, use more ranks, or choose a schedule that holds fewer "
               "activations")
    return SchedError([Diagnostic(
        f"no split of the {len(problem.model)} layers into {problem.num_stages} stages fits the "
        f"memory limit of {limit} under {problem.spec.schedule}: {why}", problem.where or problem.model.span)])


class SplitSearch:
    """One branch and bound over the splits of `problem`, scored by `ev`, at most `budget` of them
    (`run`); `bounds_along` lists the bounds it computes on the way to one split."""

    def __init__(self, problem: PartitionProblem, ev: Evaluator, budget: int):
        self.problem, self.ev, self.budget = problem, ev, budget
        layers = problem.model.layers
        self.f_prefix = prefix_sums([x.forward for x in layers])
        self.b_prefix = prefix_sums([x.backward for x in layers])
        self.t_prefix = prefix_sums([x.time for x in layers])
        self.speeds = [problem.stage_speed(s) for s in range(problem.num_stages)]
        self.fastest = max(self.speeds)
        self.table = suffix_table(len(layers), problem.num_stages, self.stage_time, ev.stage_fits,
                                  problem.min_layers, problem.pins)
        self.mpd = problem.spec.microbatches_per_direction
        self.split = problem.spec.split_backward
        self.best: Evaluation | None = None
        self.exhausted = False
        self.stage_work = [0.0] * problem.num_stages
        self.first_ahead = _first_stage_ahead(problem.spec)
        self.linear = problem.spec.chunks == 1 and problem.spec.directions == 1
        self.chain = None
        self.start: Bounds | None = None
        self.minmax: Evaluation | None = None
        if self.linear:  # one stage per rank: the fill before each stage counts exactly
            self.chain = suffix_table(len(layers), problem.num_stages, self.rank_work, ev.stage_fits,
                                      problem.min_layers, problem.pins, carry=self.chain_step)
        self.rank_stages = [[t for _d, t in problem.spec.stages_of(r)] for r in range(problem.spec.ranks)]
        self.rank_of = [problem.spec.rank_of(0, s) for s in range(problem.num_stages)]
        self.rank_speed = list(problem.devices.speeds)
        self.replicas = problem.spec.directions

    def stage_time(self, s: int, i: int, j: int) -> float:
        return (self.t_prefix[j] - self.t_prefix[i]) / self.speeds[s]

    def rank_work(self, s: int, i: int, j: int) -> float:
        return self.mpd * self.stage_time(s, i, j)

    def chain_step(self, s: int, i: int, j: int) -> float:
        """Time one microbatch spends in stage s on its way to a later stage and back."""
        prefix = self.f_prefix if self.split else self.t_prefix
        return (prefix[j] - prefix[i]) / self.speeds[s]

    def run(self) -> SplitChoice:
        """The search; Ctrl-C (in the schedule's search, which the evaluator reports, or here)
        stops it with the best split so far, marked interrupted."""
        lower = self._lower()
        if self.ev.interrupted:  # the plan itself is the best so far: score the min-max split only
            minmax = self._minmax()
            return SplitChoice(self.best, minmax, self.ev.count, False, lower, interrupted=True)
        try:
            return self._run(lower)
        except KeyboardInterrupt:
            return SplitChoice(self.best, self.minmax, self.ev.count, False, lower, interrupted=True)

    def _lower(self) -> float:
        lower = self.mpd * self.table[0][0] if self.table[0][0] < INF else INF
        if self.chain is not None:
            lower = max(lower, self.chain[0][0])
        if lower < INF:
            lower = max(lower, self._rank_bound(0, [0.0], 0))  # all the work poured onto the ranks
        return lower

    def _minmax(self) -> Evaluation | None:
        """The min-max bottleneck split, scored (the incumbent when it fits)."""
        problem = self.problem
        self.start = lexmin_split(self.table, len(problem.model), self.stage_time, self.ev.stage_fits,
                                  problem.min_layers, problem.pins)
        self.minmax = self.ev.evaluate(self.start) if self.start else None
        if self.minmax and self.minmax.fits:
            self.best = self.minmax
        return self.minmax

    def _run(self, lower: float) -> SplitChoice:
        problem = self.problem
        minmax = self._minmax()
        start = self.start
        for seed in (start, uniform_start(problem), self._even_time_start()):
            if seed and is_valid(problem, seed):
                found = self._score(seed)
                if found is not None:
                    self._climb(found, self.budget // 4)
        if not self.linear:
            for seed in self._rank_balanced_seeds():
                self._score(seed)
            if self.best is not None:
                self._climb(self.best, self.budget // 4)
            self._explore()
        if start:
            self._extend(0, 0, [0], [0.0], [0.0])
        return SplitChoice(self.best, minmax, self.ev.count, not self.exhausted, lower)

    def _bound(self, s: int, i: int, heads: list[float], tails: list[float]) -> float:
        """Any completion of a split whose stages < s end at layer i takes at least this long:
        the slowest remaining stage runs every microbatch on its rank, which starts no earlier
        than the forward chain reaches the rank's first stage (and, with a full backward,
        ends no later than the backward chain needs to get back from there)."""
        h = self.first_ahead[s]
        tail = 0.0 if self.split else tails[h]
        bound = heads[h] + self.mpd * self.table[s][i] + tail
        if self.chain is not None:
            bound = max(bound, heads[s] + (0.0 if self.split else tails[s]) + self.chain[s][i])
        return max(bound, self._rank_bound(s, heads, i))

    def _rank_bound(self, s: int, heads: list[float], i: int | None = None) -> float:
        """Each rank's work on the stages assigned so far, after the chain reaches it; with `i`,
        also the water level: the remaining layers' work (every replica, every microbatch) poured
        onto the ranks that hold the remaining stages, each at its speed, from where each stands."""
        best, levels = 0.0, []
        for r, stages in enumerate(self.rank_stages):
            first = min(stages)
            start = heads[min(first, s)]  # a rank whose first stage is still open starts later
            stands = start + sum(self.stage_work[t] for t in stages if t < s)
            if first < s:
                best = max(best, stands)
            if i is not None and any(t >= s for t in stages):
                levels.append((stands, self.rank_speed[r]))
        if i is None or not levels:
            return best
        work = self.replicas * self.mpd * (self.t_prefix[-1] - self.t_prefix[i])
        return max(best, _water_level(levels, work))

    def _extend(self, s: int, i: int, bounds: list[int], heads: list[float], tails: list[float],
                slowest: float = 0.0) -> None:
        if self.exhausted:
            return
        if s == self.problem.num_stages:
            self._score(tuple(bounds))
            return
        if self._cut(s, i, heads, tails, slowest):
            return
        for j in range(i + 1, len(self.problem.model) + 1):
            if self.table[s + 1][j] == INF or not self.ev.stage_fits(s, i, j):
                continue
            if not is_valid_prefix(self.problem, s, i, j):
                continue
            if self.best is not None and self._round_trip(s, i, j, heads, tails) > self.best.makespan + _TOL:
                continue
            speed = self.speeds[s]
            self.stage_work[s] = self.rank_work(s, i, j)  # per replica: a rank lists each one it holds
            bounds.append(j)
            heads.append(heads[-1] + (self.f_prefix[j] - self.f_prefix[i]) / speed)
            tails.append(tails[-1] + (self.b_prefix[j] - self.b_prefix[i]) / speed)
            self._extend(s + 1, j, bounds, heads, tails, max(slowest, self.stage_time(s, i, j)))
            for stack in (bounds, heads, tails):
                stack.pop()

    def bounds_along(self, bounds: Bounds) -> list[float]:
        """Every lower bound the search would compute on the way to this complete split (each
        must be at most its simulated makespan; a test checks that on every small split)."""
        heads, tails, found = [0.0], [0.0], []
        for s, (i, j) in enumerate(zip(bounds, bounds[1:])):
            found.append(self._bound(s, i, heads, tails))
            found.append(self._round_trip(s, i, j, heads, tails))
            self.stage_work[s] = self.rank_work(s, i, j)
            heads.append(heads[-1] + (self.f_prefix[j] - self.f_prefix[i]) / self.speeds[s])
            tails.append(tails[-1] + (self.b_prefix[j] - self.b_prefix[i]) / self.speeds[s])
        found.append(self._rank_bound(len(bounds) - 1, heads))
        return found

    def _round_trip(self, s: int, i: int, j: int, heads: list[float], tails: list[float]) -> float:
        """Stage s's backwards all start after its first microbatch has gone down the rest of
        the pipeline and back: chain to s, F of s, the round trip through layers j.., then every
        microbatch's backward on s (and, with a full backward, the chain back to stage 0)."""
        speed = self.speeds[s]
        forward = (self.f_prefix[j] - self.f_prefix[i]) / speed
        backward = (self.b_prefix[j] - self.b_prefix[i]) / speed
        rest = (self.t_prefix[-1] - self.t_prefix[j]) / self.fastest
        return heads[s] + forward + rest + self.mpd * backward + (0.0 if self.split else tails[s])

    def _cut(self, s: int, i: int, heads: list[float], tails: list[float], slowest: float) -> bool:
        """No completion can beat the incumbent: a slower step, or an equal step with a slower
        slowest stage (the first tie-break)."""
        if self.best is None:
            return False
        bound = self._bound(s, i, heads, tails)
        if bound > self.best.makespan + _TOL:
            return True
        return bound >= self.best.makespan - _TOL and \
            max(slowest, self.table[s][i]) > self.best.bottleneck + _TOL

    def _even_time_start(self) -> Bounds | None:
        """Cuts where the running time crosses each stage's equal share of the total (a seed
        for placements where a rank holds several stages)."""
        n, stages, total = len(self.problem.model), self.problem.num_stages, self.t_prefix[-1]
        bounds = [0]
        for s in range(1, stages):
            target = total * s / stages
            j = min(range(bounds[-1] + 1, n - (stages - s) + 1),
                    key=lambda k: abs(self.t_prefix[k] - target))
            bounds.append(j)
        return tuple(bounds) + (n,)

    def _cut_at(self, targets: list[float]) -> Bounds:
        """Cuts nearest the running sums of per-stage target times (every stage non-empty)."""
        n, stages = len(self.problem.model), self.problem.num_stages
        bounds, want = [0], 0.0
        for s in range(stages - 1):
            want += targets[s] * self.speeds[s]
            low, high = bounds[-1] + 1, n - (stages - 1 - s)
            bounds.append(min(range(low, high + 1), key=lambda k: abs(self.t_prefix[k] - want)))
        return tuple(bounds) + (n,)

    def _rank_balanced_seeds(self, rounds: int = 12) -> list[Bounds]:
        """Splits whose ranks (not stages) carry equal work: start from equal stage times, then
        scale each stage's target by (mean rank load / its rank's load) and cut again."""
        spec, stages = self.problem.spec, self.problem.num_stages
        targets = [self.t_prefix[-1] / sum(self.speeds)] * stages
        seeds = []
        for _ in range(rounds):
            bounds = self._cut_at(targets)
            seeds.append(bounds)
            times = [self.stage_time(s, a, b) for s, (a, b) in enumerate(zip(bounds, bounds[1:]))]
            load = [0.0] * spec.ranks
            for s, time in enumerate(times):
                for d in range(spec.directions):
                    load[spec.rank_of(d, s)] += time
            mean = sum(load) / len(load)
            targets = [max(time, 1e-9) * mean / max(load[self.rank_of[s]], 1e-9)
                       for s, time in enumerate(times)]
        return seeds

    def _climb(self, start: Evaluation, limit: int) -> None:
        """Hill-climb from `start`: move one boundary by one or two layers while that gives a
        better split (each one scored, so the incumbent improves too); at most `limit` splits."""
        current, improved = start, True
        while improved and current.fits and self.ev.count < limit:
            improved = False
            for k in range(1, len(current.bounds) - 1):
                for step in (-2, -1, 1, 2):
                    bounds = list(current.bounds)
                    bounds[k] += step
                    found = self._score(tuple(bounds))
                    if found is not None and found.fits and found.key() < current.key():
                        current, improved = found, True

    def _explore(self) -> None:
        """Iterated local search, for placements where a rank holds several stages (there the
        bounds cut little): a seeded generator moves a few boundaries of the best split, then
        climb; up to half the budget."""
        rng, tries = random.Random(0), 0
        while self.best is not None and self.ev.count < self.budget // 2 and tries < 4 * self.budget:
            tries += 1
            bounds = list(self.best.bounds)
            for _ in range(rng.randint(1, 3)):
                k = rng.randrange(1, len(bounds) - 1)
                bounds[k] += rng.choice((-3, -2, -1, 1, 2, 3))
            found = self._score(tuple(bounds))
            if found is not None:
                self._climb(found, self.budget // 2)

    def _score(self, bounds: Bounds) -> Evaluation | None:
        """Simulate a split (None: not a valid split, or the budget is spent); keep the best."""
        if not is_valid(self.problem, bounds):
            return None
        if self.ev.count >= self.budget and bounds not in self.ev.cache:
            self.exhausted = True
            return None
        result = self.ev.evaluate(bounds)
        if result.fits and (self.best is None or result.key() < self.best.key()):
            self.best = result
        return result


def _water_level(levels: list[tuple[float, float]], work: float) -> float:
    """The least L with sum over (stands, speed) of speed x max(0, L - stands) >= work: no way
    of sharing `work` among these ranks ends them all before L."""
    levels = sorted(levels)
    rate, poured = 0.0, 0.0
    for k, (stands, speed) in enumerate(levels):
        rate += speed
        nxt = levels[k + 1][0] if k + 1 < len(levels) else float("inf")
        if poured + rate * (nxt - stands) >= work:
            return stands + (work - poured) / rate
        poured += rate * (nxt - stands)
    return levels[-1][0]


def _first_stage_ahead(spec) -> list[int]:
    """For each s: the smallest stage held by any rank that holds a stage >= s (for linear
    placement, s itself), so that the forward chain to it is known once stages < s are."""
    lowest = [min(t for _d, t in spec.stages_of(r)) for r in range(spec.ranks)]
    first = [min(lowest[spec.rank_of(d, s)] for d in range(spec.directions))
             for s in range(spec.num_stages)]
    ahead = [0] * spec.num_stages
    for s in range(spec.num_stages - 1, -1, -1):
        ahead[s] = min(s, first[s], ahead[s + 1] if s + 1 < spec.num_stages else s)
    return ahead + [spec.num_stages]


def is_valid_prefix(problem: PartitionProblem, s: int, i: int, j: int) -> bool:
    """Stage s may hold layers i..j-1: enough layers, no pin strictly inside."""
    if j - i < problem.min_layers:
        return False
    return not any(i < p < j for p in problem.pins)
