"""Scoring one split of a partitioning problem: the simulated step, the slowest stage, and the
memory per rank (the simulator's peak of activations held, plus every stage replica's
parameters), against the per-rank limits.

`Evaluator` compiles the family's plan once (a family's order does not depend on costs) and
re-times it per split with `FastPlan`; it also reads off the plan how many microbatches of each
stage a rank holds at once, for the per-stage memory condition the exact DP uses. With `recompute
= auto` it compiles one plan per recompute choice it weighs (the same option on the first k
stages in rank order, for each option and k, and none: `compiler.recompute.candidates`) and scores
a split by the fastest of them that fits, so the split and the choice are made together.
Under `schedule = search` (or `optimal`) the plan is searched once; when Ctrl-C cuts that search
short, `interrupted` says so and no further plan is compiled (the split search then stops).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..check.memory import peak_activations
from ..compiler import compile_spec
from ..compiler.recompute import candidates
from ..lang.recompute import AUTO
from .problem import Bounds, PartitionProblem, bottleneck, check_problem, rank_params, split_spec
from .resimulate import FastPlan

_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One split scored: the simulated step, the slowest stage (F + B per microbatch at its
    rank's speed), memory per rank (peak activations held + parameters), and whether every
    rank is within its limit."""

    bounds: Bounds
    makespan: float
    bottleneck: float
    memory: tuple[float, ...]
    fits: bool

    def key(self) -> tuple:
        return (self.makespan, self.bottleneck, max(self.memory), self.bounds)


class Evaluator:
    """Scores splits of one problem: compiles the family's plan once, simulates per split."""

    def __init__(self, problem: PartitionProblem):
        check_problem(problem)
        self.problem = problem
        start = split_spec(problem, uniform_start(problem))
        choices = [start.recompute]
        if AUTO in start.recompute:  # no recompute first
            choices = sorted(candidates(start, 0), key=lambda c: sum(w != "none" for w in c))
        self.variants = []
        for choice in choices:
            self.variants.append(compile_spec(replace(start, recompute=choice)))
            if _interrupted(self.variants[-1]):
                break  # Ctrl-C in a search: no more plans (the split search stops too)
        self.interrupted = any(_interrupted(c) for c in self.variants)
        self.compiled = self.variants[0]  # the file's choice, or no recompute for `auto`
        self.inflight = _loosest([_inflight(c) for c in self.variants])
        self.fasts = [FastPlan(c) for c in self.variants]
        self.count = 0
        self.cache: dict[Bounds, Evaluation] = {}  # every split scored so far

    def evaluate(self, bounds: Bounds) -> Evaluation:
        if bounds in self.cache:
            return self.cache[bounds]
        self.count += 1
        problem = self.problem
        spec = split_spec(problem, bounds)
        params = rank_params(problem, bounds)
        limits = problem.devices.limits
        scored = []
        for index, fast in enumerate(self.fasts):  # the fastest recompute choice that fits
            memory = tuple(a + p for a, p in zip(fast.peaks(spec.activations), params))
            fits = all(limit is None or m <= limit + _TOL for m, limit in zip(memory, limits))
            scored.append((not fits, fast.makespan(spec.costs), index, memory))
        misfit, makespan, _index, memory = min(scored)
        result = Evaluation(bounds, makespan, bottleneck(problem, bounds), memory, not misfit)
        self.cache[bounds] = result
        return result

    def stage_fits(self, s: int, i: int, j: int) -> bool:
        """A necessary memory condition, exact for one stage per rank: each replica of stage s
        holding layers i..j-1, with the activations the schedule keeps in flight for it, plus
        its parameters, within its rank's limit."""
        layers = self.problem.model.layers[i:j]
        act, params = sum(x.activation for x in layers), sum(x.params for x in layers)
        for d, rank, held in self.inflight[s]:
            limit = self.problem.devices.limits[rank]
            if limit is not None and params + held * act > limit + _TOL:
                return False
        return True


def _interrupted(compiled) -> bool:
    """Whether Ctrl-C cut short the search (`schedule = search` or `optimal`) that made the plan."""
    return bool(getattr(compiled.search, "interrupted", False))


def uniform_start(problem: PartitionProblem) -> Bounds:
    """Equal layer counts per stage (a valid split to compile the plan with)."""
    n, stages = len(problem.model), problem.num_stages
    return tuple(round(k * n / stages) for k in range(stages + 1))


def _loosest(tables: list[list[list[tuple[int, int, float]]]]) -> list[list[tuple[int, int, float]]]:
    """Per stage and replica, the fewest microbatches held over the plans (any may be chosen)."""
    return [[(d, r, min(t[s][k][2] for t in tables)) for k, (d, r, _h) in enumerate(tables[0][s])]
            for s in range(len(tables[0]))]


def _inflight(compiled) -> list[list[tuple[int, int, float]]]:
    """For each stage: (direction, rank, most microbatches of it held at once on that rank),
    read off the plan by the simulator's memory model."""
    spec = compiled.spec
    rows = [tuple(x for x in row if x.is_compute) for row in compiled.plan.ranks]
    out = []
    for s in range(spec.num_stages):
        unit = replace(spec, activations=tuple(1.0 if t == s else 0.0 for t in range(spec.num_stages)))
        replicas = []
        for d in range(spec.directions):
            rank = spec.rank_of(d, s)
            replicas.append((d, rank, peak_activations(unit, rows[rank])))
        out.append(replicas)
    return out
