"""Interleaved 1F1B (Megatron-LM): v chunks per rank, stage s on rank s mod p."""

from __future__ import annotations

from ..errors import at
from ..ir import ComputeOrder, OpKind
from ..lang.spec import PipelineSpec
from .building_blocks import constraint_error, full_backward, op, require_placement


def check(spec: PipelineSpec) -> None:
    require_placement(spec, "interleaved")
    if spec.microbatches % spec.ranks:
        raise constraint_error(spec, f"Megatron's interleaved order takes microbatches in groups "
                               f"of ranks = {spec.ranks}{at(spec.source.span('ranks'))}, so "
                               f"microbatches must be a multiple of {spec.ranks} "
                               f"(got {spec.microbatches})", "microbatches")


def _forward_slot(k: int, p: int, v: int) -> tuple[int, int]:
    """(chunk, microbatch) of the k-th forward on a rank: groups of p microbatches, chunk by chunk."""
    return (k // p) % v, (k // (p * v)) * p + k % p


def _backward_slot(k: int, p: int, v: int) -> tuple[int, int]:
    """(chunk, microbatch) of the k-th backward: like forwards, chunks in reverse order."""
    chunk, mb = _forward_slot(k, p, v)
    return v - 1 - chunk, mb


def build(spec: PipelineSpec) -> ComputeOrder:
    """Warm-up (p-r-1)*2 + (v-1)*p forwards (all of them when m == p), steady 1F1B, cool-down."""
    p, v, m = spec.ranks, spec.chunks, spec.microbatches
    total = m * v
    rows = []
    for rank in range(p):
        warmup = total if m == p else min(total, (p - rank - 1) * 2 + (v - 1) * p)
        row = []

        def forward(k):
            chunk, mb = _forward_slot(k, p, v)
            row.append(op(OpKind.F, (0, chunk * p + rank), mb))

        def backward(k):
            chunk, mb = _backward_slot(k, p, v)
            row.extend(full_backward(spec, (0, chunk * p + rank), mb))

        for k in range(warmup):
            forward(k)
        for i in range(total - warmup):
            forward(warmup + i)
            backward(i)
        for k in range(total - warmup, total):
            backward(k)
        rows.append(tuple(row))
    return ComputeOrder(tuple(rows))
