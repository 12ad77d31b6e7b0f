"""`stages = auto`: from a checked spec with a layers block to the spec of the chosen split.

`problem_of_spec` reads the partitioning problem off the spec (its family, placement,
microbatches, layers, devices, pins); `resolve_stages` runs the search and returns the spec with
the chosen split's stage costs and activations, the split recorded in `spec.layers.bounds` (the
torch backend groups `build_layers()` by it). Specs without layers pass through unchanged.
"""

from __future__ import annotations

from ..lang.layers_check import with_split
from ..lang.spec import PipelineSpec
from .best_split import DEFAULT_BUDGET, choose_split
from .problem import PartitionProblem


def problem_of_spec(spec: PipelineSpec) -> PartitionProblem:
    """The partitioning problem a `stages = auto` pipeline states."""
    layered = spec.layers
    if layered is None:
        from ..errors import Diagnostic, SchedError
        raise SchedError([Diagnostic(f"pipeline '{spec.name}' has no layers block: add `stages = auto` "
                                     "and `layers { ... }` to partition it", spec.source.pipeline)])
    comm = spec.costs[0].comm if spec.costs else 0
    return PartitionProblem(layered.model, spec, layered.devices, layered.pins, layered.min_layers,
                            comm, layered.span)


def resolve_stages(spec: PipelineSpec, budget: int = DEFAULT_BUDGET) -> PipelineSpec:
    """The spec with its stages chosen by the simulated step (unchanged without layers)."""
    if spec.layers is None or spec.layers.bounds is not None:
        return spec
    choice = choose_split(problem_of_spec(spec), budget)
    if choice.interrupted:  # Ctrl-C: a split half chosen is no split to compile (the CLI says so, 130)
        raise KeyboardInterrupt
    return with_split(spec, choice.best.bounds)
