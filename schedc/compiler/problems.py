"""Verification problems as located diagnostics.

A hand-written order's problems are reported at the user's tokens; a family's or the optimizer's
at no place, as an internal error (a bug), except a family's memory over the limit, which is the
pipeline's and is reported at `limit` with the smallest limit any plan can meet.
"""

from __future__ import annotations

from ..check.verify import Problem
from ..errors import Diagnostic, Note, SchedError, Span
from ..ir import Plan
from ..passes.recompute import folded
from ..lang.spec import PipelineSpec
from ..viz.grid import format_grid


def raise_memory_problems(spec: PipelineSpec, plan: Plan, problems: list[Problem]) -> None:
    """A family's plan over the memory limit is the pipeline's problem, not the compiler's:
    report it at `limit`, with the rank's peak."""
    from ..check.memory import peak_activations
    from ..search.bound import smallest_limit

    over = [p for p in problems if p.check == "memory"]
    if not over:
        return
    rank, index = over[0].where
    rows = tuple(tuple(x for x in row if x.is_compute) for row in plan.ranks)
    compute_index = sum(1 for x in plan.ranks[rank][:index] if x.is_compute)
    peak = peak_activations(spec, rows[rank], rank)
    need = smallest_limit(folded(spec))  # the pipeline's own recompute choice counted
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


def raise_problems(spec: PipelineSpec, rows, problems: list[Problem], located: bool) -> None:
    """Raise every problem as a diagnostic (none: return); `located` puts each at the user's
    tokens (a hand-written order), else each is an internal error of the compiler."""
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
