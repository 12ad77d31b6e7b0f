"""The optimizer's entry points for the compiler: check the memory limit can be met, then find
an order as a `SearchResult`: `search` runs the heuristic and, when OR-Tools is installed and the
pipeline fits the exact model, hands its plan to CP-SAT for the rest of the budget; `optimal`
runs CP-SAT for the whole budget (and says when it cannot)."""

from __future__ import annotations

from ..dag import Dag
from ..errors import Diagnostic, SchedError
from ..lang.spec import PipelineSpec
from .bound import smallest_limit
from .local_search import SearchResult


def find_order(spec: PipelineSpec, dag: Dag) -> SearchResult:
    """The order of a `search` or `optimal` pipeline; raises a located `SchedError` on bad input."""
    check_limit(spec)
    if spec.schedule == "optimal":
        from .exact import solve_exact
        return solve_exact(spec, dag)
    return search_then_solve(spec, dag)


SOLVER_SHARE = 3 / 4  # of search_time, for CP-SAT when it runs after the heuristic


def search_then_solve(spec: PipelineSpec, dag: Dag) -> SearchResult:
    """`schedule = search`: the heuristic alone, or its first quarter of the budget and CP-SAT from
    its plan for the rest (never worse than the heuristic; see `exact.improve_with_solver`)."""
    import time
    from dataclasses import replace

    from .bound import lower_bound
    from .exact import improve_with_solver, solver_helps
    from .local_search import search_order
    from .problem import build_problem

    began = time.perf_counter()
    prob = build_problem(spec, dag)
    if not solver_helps(spec, prob):
        return search_order(spec, dag)
    found = search_order(replace(spec, search_time=spec.search_time * (1 - SOLVER_SHARE)), dag)
    if found.interrupted or found.makespan <= lower_bound(spec).value + 1e-9:
        return found  # Ctrl-C, or at the bound: nothing to prove
    return improve_with_solver(prob, found, spec.search_time * SOLVER_SHARE, spec.seed, began)


def check_limit(spec: PipelineSpec) -> None:
    """A located error at `limit` when no schedule can meet it, with the smallest one that can."""
    if spec.memory_limit is None:
        return
    need = smallest_limit(spec)
    if spec.memory_limit + 1e-9 >= need.value:
        return
    span = spec.source.span("limit") or spec.source.pipeline
    raise SchedError([Diagnostic(f"no schedule fits in limit = {spec.memory_limit:g}: the smallest "
                                 f"limit any schedule of this pipeline can meet is {need.value:g} "
                                 f"({need.reason})", span)])
