"""The optimizer's entry points for the compiler: check the memory limit can be met, then find
an order (`search`: the heuristic; `optimal`: CP-SAT) as a `SearchResult`."""

from __future__ import annotations

from ..dag import Dag
from ..errors import Diagnostic, SchedError
from ..lang.spec import PipelineSpec
from .bound import smallest_limit
from .local import SearchResult


def find_order(spec: PipelineSpec, dag: Dag) -> SearchResult:
    """The order of a `search` or `optimal` pipeline; raises a located `SchedError` on bad input."""
    check_limit(spec)
    if spec.schedule == "optimal":
        from .exact import solve_exact
        return solve_exact(spec, dag)
    from .local import search_order
    return search_order(spec, dag)


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
