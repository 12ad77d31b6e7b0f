"""Recomputation around the schedulers: `folded` (a pipeline's R ops folded into the backwards they
feed, for the families, the search and CP-SAT) and `insert_recompute` (the R ops put back into the
order they made, each right before the backward it feeds).

`folded(spec)` is the same pipeline without R ops: B and I take the R's cost, a forward holds
`keeps` x its activation, and each rank holds its largest restore `(1 - keeps) x activation` as
fixed memory (parameters). A split stage whose W keeps more than `keeps` also folds its W into I
(the plan runs R, I, W back to back), since holding would otherwise grow at I. A plan that fits
the folded pipeline fits the real one and takes no longer; exactly as long when `exact_fold`
(no W folded, no overlapped pair that gains time), so a proof about the folded pipeline (a lower
bound, CP-SAT's optimum) holds for the real one only then.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import ComputeOrder, Instr, OpKind
from ..lang.recompute import chosen_option
from ..lang.spec import PipelineSpec


def insert_recompute(spec: PipelineSpec, order: ComputeOrder) -> ComputeOrder:
    """The order with an R before each B or I of a stage that recomputes.

    Needs: `order` holds every compute op but (some or all of) the R ops, as a family or the
    search gives it for the `folded` pipeline. Guarantees: every R the order lacks stands right
    before the backward it feeds, or, when that backward is the second half of a pair in
    `order.pairs`, right before the pair's forward, so the pair stays adjacent; R ops already
    there are kept where they are; a stage whose W folds into its I (`folds_weight`) has its W
    moved right after its I; nothing else moves. Without recompute the order is returned as it is.
    Does not change `order`.

    For a runtime: in each rank's lowered list (`lower_comm`) an R comes after its forward, and
    the next compute instruction is the backward it feeds (or an OVERLAP holding it; only sends
    and receives between); the RECV_B of that backward's incoming gradient, when it comes from
    another rank, stands before the R.
    R rebuilds what the stage's forward dropped (`lang.recompute.chosen_option(spec, stage)`:
    its option's cost and `keeps`) so that the backward runs as without recompute.
    """
    if not spec.recompute or not any(chosen_option(spec, s) for s in range(spec.num_stages)):
        return order
    return ComputeOrder(tuple(_row_with_r(spec, row, order.pairs) for row in order.ranks), order.pairs)


def _row_with_r(spec: PipelineSpec, row: tuple[Instr, ...], pairs) -> tuple[Instr, ...]:
    present = {op for op in row if op.kind is OpKind.R}
    out: list[Instr] = []
    for op in row:
        if op.kind is OpKind.W and folds_weight(spec, op.stage):
            continue  # it follows its I (below)
        recompute = op.with_kind(OpKind.R)
        if op.kind in (OpKind.B, OpKind.I) and recompute not in present and chosen_option(spec, op.stage):
            paired = bool(out) and (out[-1], op) in pairs
            out.insert(len(out) - 1 if paired else len(out), recompute)
        out.append(op)
        if op.kind is OpKind.I and folds_weight(spec, op.stage):
            out.append(op.with_kind(OpKind.W))
    return tuple(out)


def folded(spec: PipelineSpec) -> PipelineSpec:
    """`spec` with each stage's R folded into its backward (see the module docstring): a spec
    without recompute that the families, the search and CP-SAT schedule as they are."""
    chosen = [chosen_option(spec, s) for s in range(spec.num_stages)]
    if not any(chosen):
        return replace(spec, recompute=(), recompute_options=())
    weight_grad = spec.weight_grad or (1.0,) * spec.num_stages
    costs, fractions = list(spec.costs), list(weight_grad)
    for s, option in enumerate(chosen):
        if option is None:
            continue
        cost = costs[s]
        overlap = None if cost.overlap is None else cost.overlap + option.cost
        costs[s] = replace(cost, backward=cost.backward + option.cost, overlap=overlap)
        if folds_weight(spec, s):  # W right after I: nothing held from I on
            costs[s], fractions[s] = replace(costs[s], weight=0), 0.0
        elif spec.split_backward:
            fractions[s] = weight_grad[s] / option.keeps if option.keeps else 0.0
    held = [1.0 if o is None else o.keeps for o in chosen]
    restore = [(1 - h) * a for h, a in zip(held, spec.activations)]
    return replace(spec, costs=tuple(costs), recompute=(), recompute_options=(),
                   activations=tuple(h * a for h, a in zip(held, spec.activations)),
                   weight_grad=tuple(fractions), parameters=_with_headroom(spec, restore))


def exact_fold(spec: PipelineSpec) -> bool:
    """Whether every plan of `spec` takes exactly as long as its folded form (module docstring)."""
    if any(folds_weight(spec, s) for s in range(spec.num_stages)):
        return False
    return not spec.overlap or all(c.overlap_cost >= c.forward + c.backward - 1e-9 for c in spec.costs)


def folds_weight(spec: PipelineSpec, stage: int) -> bool:
    """Whether `stage`'s W runs right after its I in a made plan (folded with it): a split stage
    whose W keeps more of the activation than its option does (else holding it would grow at I)."""
    option = chosen_option(spec, stage)
    if option is None or not spec.split_backward:
        return False
    return (spec.weight_grad[stage] if spec.weight_grad else 1.0) > option.keeps


def _with_headroom(spec: PipelineSpec, restore: list[float]) -> tuple[float, ...]:
    """Per-stage parameters such that each rank also holds its largest restore: the stage a
    rank meets first carries it (a bidirectional stage, held by two mirrored ranks, half)."""
    parameters = list(spec.parameters or (0.0,) * spec.num_stages)
    for r in range(spec.ranks):
        room = max(restore[s] for _d, s in spec.stages_of(r))
        if spec.directions == 1:
            parameters[spec.stages_of(r)[0][1]] += room
        else:
            parameters[r] += room / 2  # stage r: on rank r and on its mirror, with the same room
    return tuple(parameters)
