"""The exact model, solved by OR-Tools CP-SAT (the optional extra `schedc[optimal]`), started
from the heuristic search's plan: `schedule = optimal` (to prove the optimum) and the last part of
`schedule = search` when the solver is installed (to improve the heuristic's plan).

The model, as OR-Tools' scheduling guide writes one:
- an interval variable per op (integer time: every cost times `scale`), its rank's intervals in a
  NoOverlap constraint;
- each dependency: the consumer starts after the producer ends, plus comm between ranks;
- on every stage, each kind of op (F, B, I, W) runs its microbatches in order, per direction
  (`in_microbatch_order`: a relabelling of any schedule, so no optimum is lost);
- memory: per rank a cumulative of what each microbatch holds from its forward's start to the end
  of the op that frees it (I all but the kept part, W the rest, a full B all of it), within
  limit - parameters (the order-based model of `schedc.check.memory`, since a rank runs one op at
  a time); to prove, the same again as a reservoir (it prunes better, finds plans slower);
- objective: the makespan (the latest end), hinted and bounded above by the heuristic's plan and
  below by `bound.lower_bound` (a proof of its own, so no optimum is lost).
Overlapped pairs are not modelled: a pipeline whose pairs gain time is refused (use `search`).
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import replace
from fractions import Fraction

from ..dag import Dag
from ..errors import Diagnostic, Note, SchedError
from ..lang.spec import PipelineSpec
from .bound import lower_bound
from .evaluate import evaluate_rows, start_times
from .local_search import SearchResult, search_order, to_instrs
from .problem import F, Problem, build_problem
from .progress import Ticker

MAX_OPS = 3000  # the largest model `optimal` takes (p = 8, m = 32 on a V has 1,536 ops)
MEMORY_UNIT = 1000  # memory in thousandths of the file's unit
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
    if not solver_installed():
        raise _error(spec, "schedule = optimal needs OR-Tools' CP-SAT solver, which is not "
                     "installed: pip install 'schedc[optimal]'", "schedule")


def solve_exact(spec: PipelineSpec, dag: Dag | None = None) -> SearchResult:
    """The optimal order within `spec.search_time` seconds, or the best found and its proven bound."""
    prob = build_problem(spec, dag)
    check_exact(spec, prob)  # says what to install before the solver is imported
    began = time.perf_counter()
    start = search_order(replace(spec, search_time=min(HEURISTIC_TIME, spec.search_time / 10),
                                 overlap=False), prob.dag)
    floor = lower_bound(spec).value
    if start.interrupted:  # Ctrl-C during the heuristic start: its plan, not proven
        return replace(start, seconds=time.perf_counter() - began)
    if start.makespan <= floor + 1e-9:  # the heuristic reached the bound: optimal, no solver needed
        return replace(start, found_by=f"{start.found_by}; proven optimal by the lower bound",
                       proven_bound=floor, seconds=time.perf_counter() - began)
    budget = max(0.1, spec.search_time - (time.perf_counter() - began))
    return improve_with_solver(prob, start, budget, spec.seed, began, prove=True)


SEARCH_MAX_OPS = 400  # above this, the heuristic alone did better in 16 of 19 cases that differed (400-800 ops)


def solver_helps(spec: PipelineSpec, prob: Problem) -> bool:
    """Whether `search` may finish with CP-SAT: installed, the pipeline within `SEARCH_MAX_OPS`,
    and no overlapped pair that gains time (the model has none)."""
    if prob.n > SEARCH_MAX_OPS or (spec.overlap and prob.can_overlap):
        return False
    return solver_installed()


def solver_installed() -> bool:
    """Whether OR-Tools' CP-SAT can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("ortools.sat.python.cp_model") is not None
    except ImportError:  # ortools itself is missing
        return False


WORK_PER_SECOND = 0.5  # CP-SAT deterministic time per second of budget (measured here: 0.3-1)
SAFETY_FACTOR = 10  # a wall-clock stop at this many times the budget, for a far slower machine
PROBE_SHARE = 0.05  # of the budget, at most, for the probe (see `improve_with_solver`)


def improve_with_solver(prob: Problem, start: SearchResult, budget: float, seed: int,
                        began: float, prove: bool = False) -> SearchResult:
    """CP-SAT from `start` (its hint and upper bound) for `budget` seconds, counted in the
    solver's deterministic time (`WORK_PER_SECOND`) on one worker: the same plan on every machine
    and run, so every rank of `schedc run` compiles the same one (a slower machine takes longer).
    `prove` adds the memory limit a second way (a reservoir beside the cumulative): slower to
    find plans, much faster to prove them optimal. Never worse than `start`.
    Two phases: a probe with presolve that stops at its first plan (at most `PROBE_SHARE` of the
    budget; where presolve keeps the hint, that plan comes at once), then the whole budget from
    the same hint, with presolve when the probe found a plan (exactly the solve there was before
    the probe), else without. Presolve can lose the hint: on a memory-tight V of equal costs the
    solver then found no plan at all in its budget, and without presolve it proved the optimum in
    a tenth of a second; where it keeps the hint it finds better plans. A phase that proves the
    optimum, or Ctrl-C, ends it."""
    from ortools.sat.python import cp_model

    scale = _scale(prob)
    try:
        model, starts, ends, _makespan = _model(cp_model, prob, scale, start, prove)
    except KeyboardInterrupt:  # Ctrl-C while the model is built: the start plan, not proven
        return replace(start, found_by=f"{start.found_by}; interrupted, not proven",
                       seconds=time.perf_counter() - began, interrupted=True)
    floor = lower_bound(prob.spec).value
    ticker = Ticker("CP-SAT", floor, began)
    best, best_rows, bound, proven, interrupted = start.makespan, None, floor, False, False
    presolve, work = True, budget * WORK_PER_SECOND
    for probe in (True, False):
        solver = _solver(cp_model, budget, work * PROBE_SHARE if probe else work, seed, presolve)
        solver.parameters.stop_after_first_solution = probe
        status, interrupted = solve_stoppable(solver, model, scale, ticker, best)
        bound = max(bound, _response(solver, "best_objective_bound") / scale)
        found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        if found:
            rows = _rows(prob, [solver.Value(x) for x in starts], [solver.Value(e) for e in ends])
            value = evaluate_rows(prob, rows)
            if value is not None and value < best - 1e-9:
                best, best_rows = value, rows
            proven = status == cp_model.OPTIMAL
        if proven or interrupted:
            break
        presolve = found  # presolve lost the hint: the rest without it
    return _solved(prob, start, best_rows, best, bound, proven, interrupted, began)


def _response(solver, figure: str) -> float:
    """A figure of the solver's last response (`best_objective_bound`), 0 when it has none
    (Ctrl-C before the solve began)."""
    try:
        return getattr(solver, figure)
    except RuntimeError:  # "solve() has not been called"
        return 0.0


def _solver(cp_model, budget: float, work: float, seed: int, presolve: bool):
    """One worker's solver for `work` of deterministic time (a wall-clock stop at `SAFETY_FACTOR`
    times the budget, for a far slower machine)."""
    solver = cp_model.CpSolver()
    solver.parameters.max_deterministic_time = max(work, 0.0)
    solver.parameters.max_time_in_seconds = budget * SAFETY_FACTOR + 1
    solver.parameters.num_workers = 1  # one worker is deterministic; two are not
    solver.parameters.linearization_level = 0  # the LP cost up to 20x the time for nothing here
    solver.parameters.cp_model_presolve = presolve
    solver.parameters.random_seed = seed
    solver.parameters.catch_sigint_signal = False  # Ctrl-C is ours: `solve_stoppable` stops it
    return solver


def _solved(prob: Problem, start: SearchResult, rows, value: float, bound: float, proven: bool,
            interrupted: bool, began: float) -> SearchResult:  # noqa: PLR0913
    """The result: the solver's plan when it beat `start` (`rows`), else `start`, and what is proven."""
    stopped = "interrupted, not proven" if interrupted else "stopped at the time budget"
    if rows is None:  # the solver did not improve on the start
        how = start.found_by
        if proven:
            how += "; proven optimal by CP-SAT"
        else:
            how += (f"; {'interrupted while CP-SAT ran (nothing better yet), not proven; ' if interrupted else ''}"
                    f"CP-SAT's proven bound {bound:g}")
    else:
        how = "CP-SAT, proven optimal" if proven else f"CP-SAT, {stopped}; proven bound {bound:g}"
    result_rows = to_instrs(prob, rows) if rows is not None else start.rows
    return SearchResult(result_rows, start.pairs if rows is None else frozenset(), value, start.evaluations,
                        time.perf_counter() - began, how, value if proven else bound,
                        interrupted=interrupted)


def solve_stoppable(solver, model, scale: int, ticker: Ticker, best: float) -> tuple[int, bool]:
    """`solver.Solve(model)` on a worker thread while this one waits, reports progress and takes
    Ctrl-C (a signal reaches Python only between bytecodes of the main thread, never inside
    Solve): on Ctrl-C the solver is told to stop and returns its best so far. Returns (status,
    whether Ctrl-C stopped it)."""
    import threading

    from ortools.sat.python import cp_model

    seen = {"best": best, "status": cp_model.UNKNOWN}

    class _Found(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            seen["best"] = min(seen["best"], self.ObjectiveValue() / scale)

    def proven(bound: float) -> None:  # CP-SAT's proven bound, as it rises
        ticker.bound = max(ticker.bound, bound / scale)

    def solve() -> None:
        seen["status"] = solver.Solve(model, _Found())

    solver.best_bound_callback = proven

    worker = threading.Thread(target=solve, name="schedc-cp-sat", daemon=True)
    worker.start()
    interrupted = False
    while worker.is_alive():
        try:
            worker.join(0.1)
            ticker.tick(seen["best"])
        except KeyboardInterrupt:
            interrupted = True
            solver.stop_search()
    return seen["status"], interrupted


def _scale(prob: Problem) -> int:
    """The least integer that makes every time (costs, comm) whole (denominators up to 1000)."""
    values = list(prob.dur) + [d for ps in prob.preds for _q, d in ps]
    scale = 1
    for v in values:
        scale = math.lcm(scale, Fraction(v).limit_denominator(1000).denominator)
    return scale


def _model(cp_model, prob: Problem, scale: int, start: SearchResult, prove: bool):
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
    for ops in _groups(prob).values():
        for a, b in zip(ops, ops[1:]):
            model.Add(starts[b] >= ends[a])
    _memory(model, prob, starts, ends, horizon)
    if prove:
        _memory_reservoir(model, prob, starts, ends)
    floor = int(math.floor(lower_bound(prob.spec).value * scale + 1e-6))  # proven: helps prove
    makespan = model.NewIntVar(min(floor, horizon), horizon, "makespan")
    model.AddMaxEquality(makespan, ends)
    model.Minimize(makespan)
    _hint(model, prob, start, starts, ends, makespan, scale)
    return model, starts, ends, makespan


def _groups(prob: Problem) -> dict[tuple[int, int, int], list[int]]:
    """The ops of each (direction, stage, kind), by microbatch."""
    groups: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for o, op in enumerate(prob.ops):
        groups.setdefault((op.direction, op.stage, prob.kind[o]), []).append((op.microbatch, o))
    return {key: [o for _mb, o in sorted(ops)] for key, ops in groups.items()}


def in_microbatch_order(prob: Problem, begin: list[float]) -> list[float]:
    """The same schedule with each (direction, stage, kind)'s start times handed out to its
    microbatches in order: the k-th earliest start goes to microbatch k.

    Why nothing is lost (so the model may demand this order): the ops of one (direction, stage,
    kind) share a rank and a cost, and every dependency joins the same microbatch across two such
    groups with one delay. If a consumer group's k-th earliest start is t, k distinct producers
    ended by t - delay, so the producer group's k-th earliest end is at most t - delay: each
    dependency still holds after the relabelling. Each rank runs the same set of (start, cost)
    intervals, and its memory at any time depends only on how many forwards have started and how
    many I/W/B have ended per stage, which the relabelling keeps. So the makespan, the no-overlap
    and the memory limit are unchanged."""
    out = list(begin)
    for ops in _groups(prob).values():
        for o, t in zip(ops, sorted(begin[o] for o in ops)):
            out[o] = t
    return out


def _memory(model, prob: Problem, starts, ends, horizon: int) -> None:
    """Per rank, a cumulative of what each microbatch holds: from its forward's start to the end
    of the op that frees it (I: all but the kept part, W: the kept part, B: all), within the
    limit less the rank's parameters. Intervals are half-open, so memory freed at t can be taken
    at t, as the order-based model (`schedc.check.memory`) counts it."""
    if math.isinf(prob.limit):
        return
    forward = {(op.direction, op.stage, op.microbatch): o for o, op in enumerate(prob.ops) if prob.kind[o] == F}
    held: list[list] = [[] for _ in range(prob.ranks)]
    demand: list[list[int]] = [[] for _ in range(prob.ranks)]
    for o, op in enumerate(prob.ops):
        if prob.free[o] <= 0:
            continue
        f = forward[(op.direction, op.stage, op.microbatch)]
        size = model.NewIntVar(0, horizon, f"h{o}")
        held[prob.rank[o]].append(model.NewIntervalVar(starts[f], size, ends[o], f"held{o}"))
        demand[prob.rank[o]].append(int(round(prob.free[o] * MEMORY_UNIT)))
    for r in range(prob.ranks):
        if held[r]:
            model.AddCumulative(held[r], demand[r], _room(prob, r))


def _memory_reservoir(model, prob: Problem, starts, ends) -> None:
    """The same limit as `_memory`, as a reservoir per rank: a forward adds its activation at its
    start, an op that frees memory takes it back at its end."""
    if math.isinf(prob.limit):
        return
    for r in range(prob.ranks):
        times, changes = [], []
        for o in range(prob.n):
            if prob.rank[o] == r and prob.alloc[o]:
                times.append(starts[o])
                changes.append(int(round(prob.alloc[o] * MEMORY_UNIT)))
            if prob.rank[o] == r and prob.free[o]:
                times.append(ends[o])
                changes.append(-int(round(prob.free[o] * MEMORY_UNIT)))
        if times:
            model.AddReservoirConstraint(times, changes, 0, _room(prob, r))


def _room(prob: Problem, rank: int) -> int:
    """The rank's memory limit less its parameters, in `MEMORY_UNIT`s."""
    return int(math.floor((prob.limit - prob.base[rank]) * MEMORY_UNIT + 1e-6))


def _hint(model, prob: Problem, start: SearchResult, starts, ends, makespan, scale: int) -> None:
    """The heuristic plan as the solver's first solution (every variable hinted: a partial hint
    leaves the solver to complete it, which took seconds)."""
    rows = [[(prob.index[op],) for op in row] for row in start.rows]
    times = in_microbatch_order(prob, start_times(prob, rows))  # meets the order the model demands
    last = 0
    for o, t in enumerate(times):
        begin = int(round(t * scale))
        end = begin + int(round(prob.dur[o] * scale))
        model.AddHint(starts[o], begin)
        model.AddHint(ends[o], end)
        last = max(last, end)
    model.AddHint(makespan, last)


def _rows(prob: Problem, starts: list[int], ends: list[int]) -> list[list[tuple[int, ...]]]:
    rows: list[list[tuple[int, int, int]]] = [[] for _ in range(prob.ranks)]
    for o in range(prob.n):
        rows[prob.rank[o]].append((starts[o], ends[o], o))
    return [[(o,) for _s, _e, o in sorted(row)] for row in rows]
