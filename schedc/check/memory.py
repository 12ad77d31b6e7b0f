"""Memory along one rank's instruction list: activations and parameters.

The model (docs/language.md, Memory): a forward adds its stage's activation; the input-gradient
backward `I` frees all of it but the part the weight gradient keeps (`weight_grad`, a fraction of
the activation), which `W` frees; a full `B` frees it all. Every stage replica a rank holds adds
its `parameters` for the whole step. Within one instruction, allocations come before releases (an
OVERLAP holds its forward's activations while its backward still holds its own). Memory depends on
the order only, not on timing. The defaults (weight_grad = 1, parameters = 0) are the simple model:
everything held until W (or B), nothing else. A stage that recomputes (`recompute { }`) holds only
`keeps` x its activation after F; its R restores the rest before the backward frees it as above.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dag import ops_of
from ..ir import Instr, OpKind
from ..lang.recompute import chosen_option
from ..lang.spec import PipelineSpec


@dataclass(frozen=True, slots=True)
class MemoryCosts:
    """Per stage: activation, kept (the part held from I until W), held (the part a forward
    holds until its R: the whole activation without recompute); per rank: base (parameters)."""

    activation: tuple[float, ...]
    kept: tuple[float, ...]
    base: tuple[float, ...]
    held: tuple[float, ...] = ()


def memory_costs(spec: PipelineSpec) -> MemoryCosts:
    """The memory figures of `spec`, every default filled in (the last spec's figures are kept:
    verification and simulation ask once per rank, and a spec never changes)."""
    last = _LAST_COSTS[0]  # one read of (spec, costs), so threads never mix two specs' figures
    if last is not None and last[0] is spec:
        return last[1]
    costs = _memory_costs(spec)
    _LAST_COSTS[0] = (spec, costs)
    return costs


_LAST_COSTS: list = [None]


def _memory_costs(spec: PipelineSpec) -> MemoryCosts:
    stages = range(spec.num_stages)
    fraction = spec.weight_grad or (1.0,) * spec.num_stages
    kept = tuple(spec.activations[s] * fraction[s] for s in stages)
    parameters = spec.parameters or (0.0,) * spec.num_stages
    base = [0.0] * spec.ranks  # summed in `stages_of` order, in one pass (not one per rank)
    for d in range(spec.directions):
        for s in stages:
            base[spec.rank_of(d, s)] += parameters[s]
    options = [chosen_option(spec, s) for s in stages]
    held = tuple(a if o is None else a * o.keeps for a, o in zip(spec.activations, options))
    return MemoryCosts(tuple(spec.activations), kept, tuple(base), held)


def activation_steps(spec: PipelineSpec, row: tuple[Instr, ...], rank: int = 0) -> list[tuple[float, float]]:
    """For each instruction of `rank`'s list: (memory while it runs, memory after it)."""
    mem = memory_costs(spec)
    held, steps = mem.base[rank] if rank < len(mem.base) else 0.0, []
    known: dict[tuple, tuple[float, float]] = {}  # per (kind, stage, parts): what it adds, frees
    for instr in row:
        parts = instr.parts
        key = (instr.kind, instr.stage,
               parts and (parts[0].kind, parts[0].stage, parts[1].kind, parts[1].stage))
        change = known.get(key)
        if change is None:
            ops = ops_of(instr, spec.split_backward)
            change = known[key] = (sum(_allocated(mem, op) for op in ops),
                                   sum(_released(mem, op) for op in ops))
        held += change[0]
        during = held
        held -= change[1]
        steps.append((during, held))
    return steps


def _allocated(mem: MemoryCosts, op: Instr) -> float:
    if op.kind is OpKind.F:
        return mem.held[op.stage]
    if op.kind is OpKind.R:
        return mem.activation[op.stage] - mem.held[op.stage]
    return 0.0


def _released(mem: MemoryCosts, op: Instr) -> float:
    if op.kind is OpKind.B:
        return mem.activation[op.stage]
    if op.kind is OpKind.I:
        return mem.activation[op.stage] - mem.kept[op.stage]
    if op.kind is OpKind.W:
        return mem.kept[op.stage]
    return 0.0


def peak_activations(spec: PipelineSpec, row: tuple[Instr, ...], rank: int = 0) -> float:
    """The most memory `rank` holds at any time (activations, plus parameters when set)."""
    return max((during for during, _ in activation_steps(spec, row, rank)),
               default=memory_costs(spec).base[rank] if rank < spec.ranks else 0)
