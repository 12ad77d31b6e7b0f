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
from .lang.spec import (FAMILIES, FAMILY_PLACEMENT, OVERLAP_FAMILIES, SPLIT_FAMILIES, PipelineSpec,
                   check_pipeline)
from .lang.costs import recut_costs, recut_sizes
from .lang.syntax import PipelineAST, Setting
from .check.order import Problem, verify_order, verify_plan


@dataclass(frozen=True)
class Compiled:
    """A compiled pipeline: the spec and every value the passes produced."""

    spec: PipelineSpec
    dag: Dag
    order: ComputeOrder
    plan: Plan


def compile_spec(spec: PipelineSpec) -> Compiled:
    """Compile one pipeline; raises `SchedError` with located diagnostics on any problem."""
    with gc_paused():
        return _compile(spec)


def _compile(spec: PipelineSpec) -> Compiled:
    if spec.schedule == "auto":
        return compile_auto(spec)
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

    over = [p for p in problems if p.check == "memory"]
    if not over:
        return
    rank, index = over[0].where
    rows = tuple(tuple(x for x in row if x.is_compute) for row in plan.ranks)
    compute_index = sum(1 for x in plan.ranks[rank][:index] if x.is_compute)
    peak = peak_activations(spec, rows[rank])
    raise SchedError([Diagnostic(
        f"{spec.schedule} needs {peak:g} activations on rank {rank}, over the memory limit of "
        f"{spec.memory_limit:g}; raise `limit`, or choose a schedule that holds fewer",
        spec.source.span("limit") or spec.source.pipeline,
        (Note("`schedc compare FILE` lists each family's peak"),),
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
    if not same_model:
        return new
    costs = recut_costs(spec.costs, new.num_stages)
    if new.split_backward:
        _check_split_costs(spec, costs)
    return replace(new, costs=costs, activations=recut_sizes(spec.activations, new.num_stages))


def _check_split_costs(spec: PipelineSpec, costs) -> None:
    """A file written for an unsplit family may have W > B somewhere; a split family needs W <= B."""
    for stage, cost in enumerate(costs):
        if cost.weight > cost.backward:
            raise SchedError([Diagnostic(
                f"stage {stage}: W = {cost.weight:g} is larger than the full backward B = "
                f"{cost.backward:g}; a family that splits the backward needs W <= B",
                spec.source.pipeline)])


def _respecified(spec: PipelineSpec, family: str, keep_overrides: bool = True) -> PipelineSpec:
    ast = spec.source.ast
    if ast is not None:
        return check_pipeline(_ast_with_family(ast, family, spec, keep_overrides))
    placement = FAMILY_PLACEMENT[family]
    chunks = {"interleaved": max(2, spec.chunks), "v": 2}.get(placement, 1)
    stages = spec.ranks * chunks
    return replace(spec, schedule=family, placement=placement, chunks=chunks,
                   split_backward=family in SPLIT_FAMILIES, overlap=family in OVERLAP_FAMILIES,
                   costs=(spec.costs[0],) * stages, activations=(spec.activations[0],) * stages,
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


def compile_auto(spec: PipelineSpec) -> Compiled:
    """`schedule = auto`: compile every family that fits the pipeline (and its memory limit),
    each running the same model (`with_family`'s same_model), and keep the one with the shortest
    simulated step (ties: the earlier family in FAMILIES)."""
    from .simulate import simulate

    best, best_time, reasons = None, None, []
    for family in FAMILIES:
        try:
            compiled = compile_spec(with_family(spec, family))
        except SchedError as error:
            reasons.append(f"{family}: {error.diagnostics[0].message}")
            continue
        makespan = simulate(compiled.spec, compiled.dag, compiled.plan).makespan
        if best_time is None or makespan < best_time:
            best, best_time = compiled, makespan
    if best is None:
        raise SchedError([Diagnostic("schedule = auto: no family fits this pipeline",
                                     spec.source.span("schedule") or spec.source.pipeline,
                                     tuple(Note(r) for r in reasons))])
    return best
