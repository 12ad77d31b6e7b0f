"""Activation memory along one rank's instruction list.

An F adds its stage's activation size; the op that ends that stage-microbatch's backward (a full
B, or W when the backward is split) releases it. Within one instruction, allocations come before
releases (an OVERLAP holds its forward's activations while its backward still holds its own).
Memory depends on the order only, not on timing.
"""

from __future__ import annotations

from ..dag import ops_of
from ..ir import Instr, OpKind
from ..lang.spec import PipelineSpec


def activation_steps(spec: PipelineSpec, row: tuple[Instr, ...]) -> list[tuple[float, float]]:
    """For each instruction: (memory while it runs, memory after it), in activation units."""
    held, steps = 0.0, []
    for instr in row:
        ops = ops_of(instr, spec.split_backward)
        held += sum(spec.activations[op.stage] for op in ops if op.kind is OpKind.F)
        during = held
        held -= sum(spec.activations[op.stage] for op in ops if _releases(op, spec))
        steps.append((during, held))
    return steps


def _releases(op: Instr, spec: PipelineSpec) -> bool:
    return op.kind is (OpKind.W if spec.split_backward else OpKind.B)


def peak_activations(spec: PipelineSpec, row: tuple[Instr, ...]) -> float:
    """The most activation memory the rank holds at any time."""
    return max((during for during, _ in activation_steps(spec, row)), default=0)
