"""The compiler's one flow: a checked spec to a verified plan, whatever made the order.

    spec --build_dag--> DAG --order_of--> compute order (--insert_recompute-->) --fuse_overlap-->
         compute lists --(hand-written: verify_order)--> --lower_comm--> Plan --verify_plan--> Compiled

The order has three sources (`order_of`): a family (`schedules.build_order`), a hand-written
order (the file's `order` block), or the optimizer (`schedule = search` / `optimal`); every one
then takes the same passes and the same proofs. `auto` and `placement = any` compile several specs
through this flow and keep the shortest (choose.py). Every intermediate value is kept on
`Compiled` so it can be printed (`schedc compile --dump`). A pipeline that recomputes has its
order made with each R folded into its backward (`passes.recompute.folded`), then the R ops put back
(`insert_recompute`); `recompute = auto` chooses the stages' options first (recompute.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..check.verify import verify_order, verify_plan
from ..dag import Dag, build_dag
from ..gcpause import gc_paused
from ..ir import COMM, ComputeOrder, Plan
from ..lang.recompute import AUTO
from ..lang.spec import FAMILIES, SEARCHES, PipelineSpec
from ..passes import fuse_overlap, insert_recompute, lower_comm
from ..passes.recompute import exact_fold, folded
from ..schedules import build_order, check_family
from .problems import raise_memory_problems, raise_problems


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
    from .choose import compile_auto, compile_best_placement  # they compile variants through here

    if spec.schedule == "auto":
        return compile_auto(spec)
    if spec.schedule in SEARCHES and spec.placements:
        return compile_best_placement(spec)
    if AUTO in spec.recompute:
        from .recompute import compile_recompute_auto
        return compile_recompute_auto(spec)
    if spec.recompute and spec.order is None:
        from .recompute import check_choice_fits
        check_choice_fits(spec)  # said with the choice, before a scheduler says it without
    dag = build_dag(spec)
    order, found = order_of(spec, dag)
    return finish(spec, dag, order, found)


def finish(spec: PipelineSpec, dag: Dag, order: ComputeOrder, found=None) -> Compiled:
    """The steps after the order: fuse, (verify a hand-written order,) lower, verify, and for a
    found order a simulation (a found plan the simulator cannot run is a bug: fail here)."""
    handwritten = spec.order is not None
    if handwritten and _has_comm(spec.order):
        plan = Plan(spec.order)  # hand-written with communication: taken exactly as written
    else:
        rows = fuse_overlap(order, spec.overlap)
        if handwritten:  # report problems at the user's tokens
            raise_problems(spec, rows, verify_order(spec, dag, rows), located=True)
        plan = lower_comm(spec, dag, rows)
    problems = verify_plan(spec, dag, plan)
    if spec.schedule in FAMILIES and not handwritten:
        raise_memory_problems(spec, plan, problems)  # the pipeline's limit, not a compiler bug
    raise_problems(spec, plan.ranks, problems, located=handwritten)
    if found is not None:
        from ..simulate import simulate

        simulate(spec, dag, plan)
    return Compiled(spec, dag, order, plan, found)


def order_of(spec: PipelineSpec, dag: Dag) -> tuple[ComputeOrder, object]:
    """The compute order of `spec` and, for a searched one, the optimizer's report (else None):
    the optimizer's for `search` / `optimal`, else the family's or the hand-written one."""
    if spec.recompute and spec.order is None:  # made with each R folded in, then the R ops put back
        plain = folded(spec)
        order, found = order_of(plain, build_dag(plain))
        if getattr(found, "proven_bound", None) is not None and not exact_fold(spec):
            found = replace(found, proven_bound=None)  # a proof of the folded form, not of this plan
        return insert_recompute(spec, order), found
    if spec.schedule in SEARCHES:
        from ..search.strategy import find_order

        result = find_order(spec, dag)
        return ComputeOrder(result.rows, result.pairs), result
    check_family(spec)
    return build_order(spec), None


def _has_comm(rows) -> bool:
    return any(x.kind in COMM for row in rows for x in row)
