"""Memory along one rank's instruction list: activations and parameters.

The model (docs/language.md, Memory): a forward adds its stage's activation; the input-gradient
backward `I` frees all of it but the part the weight gradient keeps (`weight_grad`, a fraction of
the activation), which `W` frees; a full `B` frees it all. Every stage replica a rank holds adds
its `parameters` for the whole step. Within one instruction, allocations come before releases (an
OVERLAP holds its forward's activations while its backward still holds its own). Memory depends on
the order only, not on timing. The defaults (weight_grad = 1, parameters = 0) are the simple model:
everything held until W (or B), nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dag import ops_of
from ..ir import Instr, OpKind
from ..lang.spec import PipelineSpec


@dataclass(frozen=True, slots=True)
class MemoryCosts:
    """Per stage: activation, kept (the part held from I until W); per rank: base (parameters)."""

    activation: tuple[float, ...]
    kept: tuple[float, ...]
    base: tuple[float, ...]


def memory_costs(spec: PipelineSpec) -> MemoryCosts:
    """The memory figures of `spec`, every default filled in."""
    stages = range(spec.num_stages)
    fraction = spec.weight_grad or (1.0,) * spec.num_stages
    kept = tuple(spec.activations[s] * fraction[s] for s in stages)
    parameters = spec.parameters or (0.0,) * spec.num_stages
    base = tuple(float(sum(parameters[s] for _d, s in spec.stages_of(r))) for r in range(spec.ranks))
    return MemoryCosts(tuple(spec.activations), kept, base)


def activation_steps(spec: PipelineSpec, row: tuple[Instr, ...], rank: int = 0) -> list[tuple[float, float]]:
    """For each instruction of `rank`'s list: (memory while it runs, memory after it)."""
    mem = memory_costs(spec)
    held, steps = mem.base[rank] if rank < len(mem.base) else 0.0, []
    for instr in row:
        ops = ops_of(instr, spec.split_backward)
        held += sum(mem.activation[op.stage] for op in ops if op.kind is OpKind.F)
        during = held
        held -= sum(_released(mem, op) for op in ops)
        steps.append((during, held))
    return steps


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
