"""Helpers for the tests: build specs with uniform costs directly, compile and simulate them."""

from __future__ import annotations

from schedc.compiler import compile_spec
from schedc.simulate import simulate
from schedc.lang.spec import (FAMILY_PLACEMENT, OVERLAP_FAMILIES, SPLIT_FAMILIES, PipelineSpec,
                         StageCost)

def make_spec(family: str, ranks: int, microbatches: int, F=1, B=2, W=1, FB=None, comm=0,
              chunks: int = 2, limit=None) -> PipelineSpec:
    """A spec with uniform costs, as the closed forms assume."""
    placement = FAMILY_PLACEMENT[family]
    chunks = {"interleaved": chunks, "v": 2}.get(placement, 1)
    stages = ranks * chunks
    return PipelineSpec("t", ranks, microbatches, family, placement, chunks,
                        family in SPLIT_FAMILIES, family in OVERLAP_FAMILIES,
                        (StageCost(F, B, W, FB, comm),) * stages, (1,) * stages, limit)


def run(spec: PipelineSpec):
    compiled = compile_spec(spec)
    return compiled, simulate(compiled.spec, compiled.dag, compiled.plan)
