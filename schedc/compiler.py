"""The compiler: one flat function of named steps from a checked spec to a verified plan.

    spec --build_dag--> DAG --build_order--> compute order --fuse_overlap--> compute lists
         --(hand-written: verify_order)--> --lower_comm--> Plan --verify_plan--> Compiled

Every intermediate value is kept on `Compiled` so it can be printed (`schedc compile --dump`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .dag import Dag, build_dag
from .errors import Diagnostic, Note, SchedError, Span
from .gcpause import gc_paused
from .viz.grid import format_grid
from .ir import COMM, ComputeOrder, Plan
from .passes import fuse_overlap, lower_comm
from .schedules import build_order, check_family
from .lang.costs import recut_costs, recut_sizes
from .lang.spec import (FAMILIES, FAMILY_PLACEMENT, OVERLAP_FAMILIES, PLACEMENTS, SEARCHES,
                        SPLIT_FAMILIES, PipelineSpec, check_pipeline)
from .lang.syntax import PipelineAST, Setting
from .check.order import Problem, verify_order, verify_plan


@dataclass(frozen=True)
class Compiled:
    """A compiled pipeline: the spec and every value the passes produced."""

    spec: PipelineSpec
    dag: Dag
    order: ComputeOrder
    plan: Plan
    search: object = None  # schedule = search/optimal: what the optimizer reports (search.SearchResult)


def compile_spec(spec: PipelineSpec) -> Compiled:
    """Compile one pipeline; raises `SchedError` with located diagnostics on any problem."""
    with gc_paused():
        return _compile(spec)


def _compile(spec: PipelineSpec) -> Compiled:
    if spec.schedule == "auto":
        return compile_auto(spec)
    if spec.schedule in SEARCHES:
        return compile_search(spec)
    check_family(spec)
    dag = build_dag(spec)
    order = build_order(spec)
    if spec.order is not None and _has_comm(spec.order):
        plan = Plan(spec.order)  # hand-written with communication: taken exactly as written
    else:
        rows = fuse_overlap(order, spec.overlap)
        if spec.order is not None:  # hand-written: report problems at the user's tokens
            _raise_problems(spec, rows, verify_order(spec, dag, rows), located=True)
        plan = lower_comm(spec, dag, rows)
    problems = verify_plan(spec, dag, plan)
    if spec.order is None:
        _raise_memory_problems(spec, plan, problems)
    _raise_problems(spec, plan.ranks, problems, located=spec.order is not None)
    return Compiled(spec, dag, order, plan)


def _raise_memory_problems(spec: PipelineSpec, plan: Plan, problems: list[Problem]) -> None:
    """A family's plan over the memory limit is the pipeline's problem, not the compiler's:
    report it at `limit`, with the rank's peak."""
    from .check.memory import peak_activations
    from .search.bound import smallest_limit

    over = [p for p in problems if p.check == "memory"]
    if not over:
        return
    rank, index = over[0].where
    rows = tuple(tuple(x for x in row if x.is_compute) for row in plan.ranks)
    compute_index = sum(1 for x in plan.ranks[rank][:index] if x.is_compute)
    peak = peak_activations(spec, rows[rank], rank)
    need = smallest_limit(spec)
    if need.value > spec.memory_limit + 1e-9:
        advice = (f"no schedule fits: the smallest limit any schedule of this pipeline can meet is "
                  f"{need.value:g} ({need.reason})")
    else:
        advice = (f"some schedule fits down to {need.value:g}: try `schedule = search`, which "
                  "keeps to the limit")
    raise SchedError([Diagnostic(
        f"{spec.schedule} needs {peak:g} activations on rank {rank}, over the memory limit of "
        f"{spec.memory_limit:g}; raise `limit`, or choose a schedule that holds fewer",
        spec.source.span("limit") or spec.source.pipeline,
        (Note(advice), Note("`schedc compare FILE` lists each family's peak")),
        detail=format_grid(rows, focus=(rank, compute_index)))])


def _has_comm(rows) -> bool:
    return any(x.kind in COMM for row in rows for x in row)


def _raise_problems(spec: PipelineSpec, rows, problems: list[Problem], located: bool) -> None:
    if not problems:
        return
    diagnostics = []
    for problem in problems:
        span = _span_of(spec, problem.where) if located else None
        notes = tuple(Note(f"see rank {w[0]}, position {w[1]}", _span_of(spec, w))
                      for w in problem.related if located and w[1] >= 0)
        prefix = "" if located else "internal error: the compiler produced a plan that fails "\
                                    "verification (please report it): "
        grid = format_grid(rows, focus=problem.where) if problem.where else ""
        diagnostics.append(Diagnostic(prefix + problem.message, span, notes, grid))
    raise SchedError(diagnostics)


def _span_of(spec: PipelineSpec, where) -> Span | None:
    if where is None:
        return spec.source.pipeline
    rank, index = where
    if index >= 0 and spec.source.token(rank, index):
        return spec.source.token(rank, index)
    return spec.source.rank_line(rank) or spec.source.pipeline


# ---- the same pipeline under another family (for `auto` and `schedc compare`) -------------------

_FAMILY_KEYS = ("schedule", "placement", "chunks", "split_backward", "overlap")


def with_family(spec: PipelineSpec, family: str, same_model: bool = True) -> PipelineSpec:
    """`spec` with another schedule family and that family's placement and defaults.

    When the spec came from a file, the file's settings are re-checked under the new family (a
    located error where they do not fit it). With `same_model` (the default), the new family runs
    the same model, the same layers cut differently: its per-stage costs and activation sizes
    are the file's stages re-cut into the new number of stages (`recut_costs`), so a family with
    k times the stages runs each at 1/k and per-stage overrides follow the layers they describe,
    whatever stages the new placement has. Without it, per-stage overrides apply by stage number
    (a located error for a stage the new placement lacks); a spec that did not come from a file
    then uses stage 0's cost and activation size for every stage.
    """
    new = _respecified(spec, family, keep_overrides=not same_model)
    return _same_model(spec, new) if same_model else new


def _check_split_costs(spec: PipelineSpec, costs) -> None:
    """A file written for an unsplit family may have W > B somewhere; a split family needs W <= B."""
    for stage, cost in enumerate(costs):
        if cost.weight > cost.backward:
            raise SchedError([Diagnostic(
                f"stage {stage}: W = {cost.weight:g} is larger than the full backward B = "
                f"{cost.backward:g}; a family that splits the backward needs W <= B",
                spec.source.pipeline)])


def _same_model(spec: PipelineSpec, new: PipelineSpec) -> PipelineSpec:
    """`new` (another family or placement of `spec`) running the same model: `spec`'s stages re-cut
    into `new`'s (`recut_costs`): costs, activation and parameter sizes by the share of the model
    each new stage covers, the weight-gradient fraction from the stage a new stage starts in."""
    stages = new.num_stages
    costs = recut_costs(spec.costs, stages)
    if new.split_backward:
        _check_split_costs(spec, costs)
    old = len(spec.weight_grad)
    return replace(new, costs=costs, activations=recut_sizes(spec.activations, stages),
                   parameters=recut_sizes(spec.parameters, stages) if spec.parameters else (),
                   weight_grad=tuple(spec.weight_grad[t * old // stages] for t in range(stages)) if old else ())


def _respecified(spec: PipelineSpec, family: str, keep_overrides: bool = True) -> PipelineSpec:
    """The spec under `family` (see `with_family`); `search`/`optimal` keep a searching file's
    placement, and otherwise choose any placement (the same model cut as a linear pipeline's
    stages)."""
    if family in SEARCHES and spec.schedule in SEARCHES:
        return replace(spec, schedule=family)
    if family in SEARCHES:  # each placement is cut from this spec's stages (search.with_placement)
        return replace(spec, schedule=family, split_backward=True, order=None,
                       overlap=family in OVERLAP_FAMILIES, placements=PLACEMENTS)
    ast = spec.source.ast
    if ast is not None:
        return check_pipeline(_ast_with_family(ast, family, spec, keep_overrides))
    placement = FAMILY_PLACEMENT[family]
    chunks = {"interleaved": max(2, spec.chunks), "v": 2}.get(placement, 1)
    stages = spec.ranks * chunks
    return replace(spec, schedule=family, placement=placement, chunks=chunks,
                   split_backward=family in SPLIT_FAMILIES, overlap=family in OVERLAP_FAMILIES,
                   costs=(spec.costs[0],) * stages, activations=(spec.activations[0],) * stages,
                   weight_grad=spec.weight_grad[:1] * stages, parameters=spec.parameters[:1] * stages,
                   order=None)


def _ast_with_family(ast: PipelineAST, family: str, spec: PipelineSpec,
                     keep_overrides: bool = True) -> PipelineAST:
    settings = [s for s in ast.settings if s.key not in _FAMILY_KEYS]
    where = ast.name_span
    settings.append(Setting("schedule", family, where, where, where))
    if family == "interleaved" and spec.placement == "interleaved":
        settings.append(Setting("chunks", str(spec.chunks), where, where, where))
    blocks = ast.blocks if keep_overrides else tuple(replace(b, overrides=()) for b in ast.blocks)
    return replace(ast, settings=tuple(settings), blocks=blocks, orders=())


def _shortest(variants) -> tuple[Compiled | None, float | None, list[str]]:
    """Compile each (label, make spec) and keep the shortest simulated step (ties: the first);
    the reasons the others failed, each as `label: message`."""
    from .simulate import simulate

    best, best_time, reasons = None, None, []
    for label, make in variants:
        try:
            compiled = compile_spec(make())
        except SchedError as error:
            reasons.append(f"{label}: {error.diagnostics[0].message}")
            continue
        makespan = simulate(compiled.spec, compiled.dag, compiled.plan).makespan
        if best_time is None or makespan < best_time - 1e-9:
            best, best_time = compiled, makespan
    return best, best_time, reasons


AUTO_SEARCH_TIME = 0.5  # seconds of search `auto` spends unless the file sets search_time
AUTO_SEARCH_MAX_OPS = 20_000  # above this, `auto` searches only when the file sets search_time


def compile_auto(spec: PipelineSpec) -> Compiled:
    """`schedule = auto`: compile every family that fits the pipeline (and its memory limit),
    each running the same model (`with_family`'s same_model), keep the one with the shortest
    simulated step (ties: the earlier family in FAMILIES), then let the search (seeded with the
    families) try to beat it on that family's placement, within AUTO_SEARCH_TIME unless the file
    sets `search_time`."""
    best, best_time, reasons = _shortest((family, lambda f=family: with_family(spec, f))
                                         for family in FAMILIES)
    if best is None:
        raise SchedError([Diagnostic("schedule = auto: no family fits this pipeline",
                                     spec.source.span("schedule") or spec.source.pipeline,
                                     tuple(Note(r) for r in reasons))])
    return _searched(spec, best, best_time)


def _searched(spec: PipelineSpec, best: Compiled, best_time: float) -> Compiled:
    from .simulate import simulate

    budget = spec.search_time if spec.source.span("search_time") else AUTO_SEARCH_TIME
    ops = sum(len(row) for row in best.order.ranks)
    if ops > AUTO_SEARCH_MAX_OPS and not spec.source.span("search_time"):
        return best  # a large pipeline: the families only, unless the file asks for a search
    try:
        searching = replace(with_family(spec, "search"), search_time=budget,
                            placements=(best.spec.placement,))
        found = compile_spec(searching)
    except SchedError:
        return best
    makespan = simulate(found.spec, found.dag, found.plan).makespan
    return found if makespan < best_time - 1e-9 else best


# ---- schedules found by the optimizer (schedc.search) -------------------------------------------

def compile_search(spec: PipelineSpec) -> Compiled:
    """`schedule = search` or `optimal`: the optimizer's order, then the passes every plan takes;
    `placement = any` compiles each placement (the same model) and keeps the shortest."""
    from .search.driver import find_order
    from .simulate import simulate

    if spec.placements:
        return _best_placement(spec)
    dag = build_dag(spec)
    result = find_order(spec, dag)
    order = ComputeOrder(result.rows, result.pairs)
    plan = lower_comm(spec, dag, fuse_overlap(order, spec.overlap))
    _raise_problems(spec, plan.ranks, verify_plan(spec, dag, plan), located=False)
    simulate(spec, dag, plan)  # a plan the simulator cannot run is a bug: fail here, not later
    return Compiled(spec, dag, order, plan, result)


def _best_placement(spec: PipelineSpec) -> Compiled:
    best, _time, reasons = _shortest((f"placement = {placement}", lambda p=placement: with_placement(spec, p))
                                     for placement in spec.placements)
    if best is None:
        raise SchedError([Diagnostic(f"placement = any: no placement can run this pipeline "
                                     f"({'; '.join(reasons)})",
                                     spec.source.span("placement") or spec.source.pipeline)])
    return best


def with_placement(spec: PipelineSpec, placement: str) -> PipelineSpec:
    """`spec` on another placement, the same model re-cut into its stages (as `with_family` does)."""
    ast = spec.source.ast
    if ast is not None:
        settings = [s for s in ast.settings if s.key not in ("placement", "chunks", "schedule")]
        where = ast.name_span
        settings += [Setting("placement", placement, where, where, where),
                     Setting("schedule", spec.schedule, where, where, where)]
        blocks = tuple(replace(b, overrides=()) for b in ast.blocks)  # re-cut below instead
        new = check_pipeline(replace(ast, settings=tuple(settings), blocks=blocks, orders=()))
        new = replace(new, split_backward=spec.split_backward, overlap=spec.overlap,
                      search_time=spec.search_time, seed=spec.seed)
    else:
        chunks = {"interleaved": 2, "v": 2}.get(placement, 1)
        stages = spec.ranks * chunks
        new = replace(spec, placement=placement, chunks=chunks, placements=(),
                      costs=spec.costs[:1] * stages, activations=spec.activations[:1] * stages,
                      weight_grad=spec.weight_grad[:1] * stages,
                      parameters=spec.parameters[:1] * stages)
    return _same_model(spec, new)
