"""`schedule = optimal`: the exact model, solved by OR-Tools CP-SAT (the optional extra
`schedc[optimal]`), started from the heuristic search's plan.

The model, as OR-Tools' scheduling guide writes one:
- an interval variable per op (integer time: every cost times `scale`), its rank's intervals in a
  NoOverlap constraint;
- each dependency: the consumer starts after the producer ends, plus comm between ranks;
- the microbatches of stage 0 start in order per direction (they are interchangeable: a pure
  relabelling, so no optimum is lost);
- memory: per rank a reservoir: a forward adds its activation at its start, I frees all but the
  kept part at its end, W (or B) the rest at its end; the level stays within limit - parameters
  (the order-based model of `schedc.memory`, since a rank runs one op at a time);
- objective: the makespan (the latest end), hinted and bounded above by the heuristic's plan and
  below by `bound.lower_bound` (a proof of its own, so no optimum is lost).
Overlapped pairs are not modelled: a pipeline whose pairs gain time is refused (use `search`).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

from ..dag import Dag
from ..errors import Diagnostic, Note, SchedError
from ..lang.spec import PipelineSpec
from .bound import lower_bound
from .evaluate import evaluate_rows
from .local import SearchResult, search_order, to_instrs
from .problem import F, Problem, build_problem

MAX_OPS = 3000  # the largest model `optimal` takes (p = 8, m = 32 on a V has 1,536 ops)
HEURISTIC_TIME = 1.0  # seconds (at most a tenth of the budget) for the heuristic start


def _error(spec: PipelineSpec, message: str, key: str) -> SchedError:
    span = spec.source.span(key) or spec.source.span("schedule") or spec.source.pipeline
    return SchedError([Diagnostic(message, span, (Note("or write schedule = search: a heuristic that needs "
                                                       "no solver, takes any size and overlaps pairs"),))])


def check_exact(spec: PipelineSpec, prob: Problem) -> None:
    """Located errors for what `optimal` cannot do: too big, overlapped pairs, no solver (the
    pipeline's own problems first, so they read the same with or without the solver)."""
    if prob.n > MAX_OPS:
        raise _error(spec, f"schedule = optimal handles up to {MAX_OPS:,} ops (ranks x stages per "
                     f"rank x microbatches x 3); this pipeline has {prob.n:,}", "microbatches")
    if spec.overlap and any(g > 1e-9 for g in prob.gain):
        raise _error(spec, "schedule = optimal does not model overlapped F&B pairs; set "
                     "overlap = false to solve without them", "overlap")
    try:
        import ortools.sat.python.cp_model  # noqa: F401
    except ImportError:
        raise _error(spec, "schedule = optimal needs OR-Tools' CP-SAT solver, which is not "
                     "installed: pip install 'schedc[optimal]'", "schedule") from None


def solve_exact(spec: PipelineSpec, dag: Dag | None = None) -> SearchResult:
    """The optimal order within `spec.search_time` seconds, or the best found and its proven bound."""
    from dataclasses import replace

    prob = build_problem(spec, dag)
    check_exact(spec, prob)  # says what to install before the solver is imported
    from ortools.sat.python import cp_model
    began = time.perf_counter()
    start = search_order(replace(spec, search_time=min(HEURISTIC_TIME, spec.search_time / 10),
                                 overlap=False), prob.dag)
    floor = lower_bound(spec).value
    if start.makespan <= floor + 1e-9:  # the heuristic reached the bound: optimal, no solver needed
        return replace(start, found_by=f"{start.found_by}; proven optimal by the lower bound",
                       proven_bound=floor, seconds=time.perf_counter() - began)
    scale = _scale(prob)
    model, starts, ends, makespan = _model(cp_model, prob, scale, start)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.1, spec.search_time - (time.perf_counter() - began))
    solver.parameters.num_workers = 2
    solver.parameters.random_seed = spec.seed
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return replace(start, found_by="the heuristic (CP-SAT found nothing better in time)")
    rows = _rows(prob, [solver.Value(s) for s in starts], [solver.Value(e) for e in ends])
    value = evaluate_rows(prob, rows)
    bound = solver.BestObjectiveBound() / scale
    if value is None or value > start.makespan + 1e-9:
        rows, value = None, start.makespan
    proven = status == cp_model.OPTIMAL
    how = "CP-SAT, proven optimal" if proven else f"CP-SAT, stopped at the time budget; proven bound {bound:g}"
    result_rows = to_instrs(prob, rows) if rows is not None else start.rows
    return SearchResult(result_rows, frozenset(), value, start.evaluations,
                        time.perf_counter() - began, how, bound if not proven else value)


def _scale(prob: Problem) -> int:
    """The least integer that makes every time (costs, comm) whole (denominators up to 1000)."""
    values = list(prob.dur) + [d for ps in prob.preds for _q, d in ps]
    scale = 1
    for v in values:
        scale = math.lcm(scale, Fraction(v).limit_denominator(1000).denominator)
    return scale


def _model(cp_model, prob: Problem, scale: int, start: SearchResult):
    model = cp_model.CpModel()
    horizon = int(round(start.makespan * scale)) + 1
    dur = [int(round(d * scale)) for d in prob.dur]
    starts = [model.NewIntVar(0, horizon, f"s{o}") for o in range(prob.n)]
    ends = [model.NewIntVar(0, horizon, f"e{o}") for o in range(prob.n)]
    intervals = [model.NewIntervalVar(starts[o], dur[o], ends[o], f"i{o}") for o in range(prob.n)]
    for r in range(prob.ranks):
        model.AddNoOverlap([intervals[o] for o in range(prob.n) if prob.rank[o] == r])
    for o, ps in enumerate(prob.preds):
        for q, delay in ps:
            model.Add(starts[o] >= ends[q] + int(round(delay * scale)))
    _first_stage_in_order(model, prob, starts)
    _memory(model, prob, starts, ends, scale)
    floor = int(math.floor(lower_bound(prob.spec).value * scale + 1e-6))  # proven: helps prove
    makespan = model.NewIntVar(min(floor, horizon), horizon, "makespan")
    model.AddMaxEquality(makespan, ends)
    model.Minimize(makespan)
    _hint(model, prob, start, starts, scale)
    return model, starts, ends, makespan


def _first_stage_in_order(model, prob: Problem, starts) -> None:
    firsts: dict[int, list[tuple[int, int]]] = {}
    for o, op in enumerate(prob.ops):
        if prob.kind[o] == F and op.stage == 0:
            firsts.setdefault(op.direction, []).append((op.microbatch, o))
    for ops in firsts.values():
        ordered = [o for _mb, o in sorted(ops)]
        for a, b in zip(ordered, ordered[1:]):
            model.Add(starts[b] >= starts[a])


def _memory(model, prob: Problem, starts, ends, scale: int) -> None:
    if math.isinf(prob.limit):
        return
    unit = 1000  # memory in thousandths
    for r in range(prob.ranks):
        times, changes = [], []
        for o in range(prob.n):
            if prob.rank[o] != r:
                continue
            if prob.alloc[o]:
                times.append(starts[o])
                changes.append(int(round(prob.alloc[o] * unit)))
            if prob.free[o]:
                times.append(ends[o])
                changes.append(-int(round(prob.free[o] * unit)))
        room = int(math.floor((prob.limit - prob.base[r]) * unit + 1e-6))
        if times:
            model.AddReservoirConstraint(times, changes, 0, room)


def _hint(model, prob: Problem, start: SearchResult, starts, scale: int) -> None:
    """The heuristic plan's times as the solver's first solution."""
    rows = [[(prob.index[op],) for op in row] for row in start.rows]
    times = _times(prob, rows)
    for o, t in enumerate(times):
        model.AddHint(starts[o], int(round(t * scale)))


def _times(prob: Problem, rows) -> list[float]:
    """Start time of every op under the fixed order `rows` (as `evaluate` runs it)."""
    begin = [0.0] * prob.n
    end = [0.0] * prob.n
    done = [False] * prob.n
    position, free_at = [0] * len(rows), [0.0] * len(rows)
    left = sum(len(r) for r in rows)
    while left:
        for r, row in enumerate(rows):
            while position[r] < len(row):
                o = row[position[r]][0]
                if not all(done[q] for q, _d in prob.preds[o]):
                    break
                t = max([free_at[r]] + [end[q] + d for q, d in prob.preds[o]])
                begin[o], end[o], done[o] = t, t + prob.dur[o], True
                free_at[r] = end[o]
                position[r] += 1
                left -= 1
    return begin


def _rows(prob: Problem, starts: list[int], ends: list[int]) -> list[list[tuple[int, ...]]]:
    rows: list[list[tuple[int, int, int]]] = [[] for _ in range(prob.ranks)]
    for o in range(prob.n):
        rows[prob.rank[o]].append((starts[o], ends[o], o))
    return [[(o,) for _s, _e, o in sorted(row)] for row in rows]
