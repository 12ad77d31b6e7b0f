"""The partitioning problem: a layer model, a pipeline (family, placement, microbatches) and the
devices; and what a split of the layers into stages means on schedc's cost model.

A split is `bounds`: S + 1 layer indices 0 = b0 < b1 < ... < bS = L (DeepSpeed's `parts`); stage
s holds layers b[s] .. b[s+1]-1. Stage s runs on the rank the placement gives it
(`spec.rank_of(0, s)`), so its F, B, W are its layers' sums divided by that rank's speed; its
activation is the sum of its layers' activations; every replica of a stage holds its layers'
parameters (DualPipe holds two replicas per rank).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import Diagnostic, SchedError, Span
from ..lang.layers import Devices, LayerModel
from ..lang.spec import PipelineSpec, StageCost

Bounds = tuple[int, ...]


@dataclass(frozen=True)
class PartitionProblem:
    """What to partition and where. `spec` gives ranks, microbatches, the family and its
    placement (its stage costs are ignored); `pins` are layer indices that must start a stage;
    every stage holds at least `min_layers` layers."""

    model: LayerModel
    spec: PipelineSpec
    devices: Devices
    pins: tuple[int, ...] = ()
    min_layers: int = 1
    comm: float = 0
    where: Span | None = field(default=None, compare=False)

    @property
    def num_stages(self) -> int:
        return self.spec.num_stages

    def stage_speed(self, stage: int) -> float:
        return self.devices.speeds[self.spec.rank_of(0, stage)]

    def stage_limit(self, stage: int) -> float | None:
        return self.devices.limits[self.spec.rank_of(0, stage)]


def _error(message: str, span: Span | None) -> SchedError:
    return SchedError([Diagnostic(message, span)])


def check_problem(problem: PartitionProblem) -> None:
    """Located errors for a problem no split can solve (before any search)."""
    spec, model, devices = problem.spec, problem.model, problem.devices
    stages, span = problem.num_stages, problem.where or model.span
    if len(devices.speeds) != spec.ranks or len(devices.limits) != spec.ranks:
        raise _error(f"{len(devices.speeds)} device speeds for {spec.ranks} ranks; give one per rank",
                     devices.span or span)
    bad = [s for s in devices.speeds if not s > 0]
    if bad:
        raise _error(f"a device speed must be > 0, got {bad[0]:g}", devices.span or span)
    if len(model) < stages * problem.min_layers:
        need = f"{stages * problem.min_layers} ({problem.min_layers} per stage)" if problem.min_layers > 1 else str(stages)
        raise _error(f"{len(model)} layers cannot fill {stages} stages ({spec.ranks} ranks, "
                     f"placement {spec.placement}): each stage needs a layer, so at least {need} "
                     "layers are needed; use fewer ranks or describe the model in finer layers",
                     model.span or span)
    if spec.placement == "bidirectional" and len(set(devices.speeds)) > 1:
        raise _error("a bidirectional pipeline (DualPipe) runs every stage on two ranks, so its "
                     "stage costs cannot follow per-rank speeds; give equal speeds, or use dualpipev",
                     devices.span or span)
    if spec.schedule in ("auto", "manual"):
        raise _error(f"stages = auto needs a schedule family to simulate, not schedule = {spec.schedule}",
                     spec.source.span("schedule") or span)


def stage_ranges(bounds: Bounds) -> list[range]:
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def stage_costs(problem: PartitionProblem, bounds: Bounds) -> tuple[StageCost, ...]:
    """Each stage's F, B, W: its layers' sums at its rank's speed."""
    layers, costs = problem.model.layers, []
    for s, r in enumerate(stage_ranges(bounds)):
        speed = problem.stage_speed(s)
        costs.append(StageCost(forward=sum(layers[i].forward for i in r) / speed,
                               backward=sum(layers[i].backward for i in r) / speed,
                               weight=sum(layers[i].weight for i in r) / speed, comm=problem.comm))
    return tuple(costs)


def stage_activations(problem: PartitionProblem, bounds: Bounds) -> tuple[float, ...]:
    return tuple(sum(problem.model.layers[i].activation for i in r) for r in stage_ranges(bounds))


def stage_params(problem: PartitionProblem, bounds: Bounds) -> tuple[float, ...]:
    return tuple(sum(problem.model.layers[i].params for i in r) for r in stage_ranges(bounds))


def rank_params(problem: PartitionProblem, bounds: Bounds) -> tuple[float, ...]:
    """Parameter memory per rank: every stage replica the rank holds (two under DualPipe)."""
    params, spec = stage_params(problem, bounds), problem.spec
    return tuple(sum(params[s] for _d, s in spec.stages_of(r)) for r in range(spec.ranks))


def split_spec(problem: PartitionProblem, bounds: Bounds) -> PipelineSpec:
    """The pipeline with this split's stage costs and activations (no memory limit: the
    partitioner checks activations plus parameters itself)."""
    return replace(problem.spec, costs=stage_costs(problem, bounds),
                   activations=stage_activations(problem, bounds), memory_limit=None, order=None)


def bottleneck(problem: PartitionProblem, bounds: Bounds) -> float:
    """The slowest stage: its F + B per microbatch at its rank's speed."""
    return max(c.forward + c.backward for c in stage_costs(problem, bounds))


def is_valid(problem: PartitionProblem, bounds: Bounds) -> bool:
    """S+1 increasing bounds from 0 to L, each stage >= min_layers, every pin starting a stage."""
    if len(bounds) != problem.num_stages + 1 or bounds[0] != 0 or bounds[-1] != len(problem.model):
        return False
    if any(b - a < problem.min_layers for a, b in zip(bounds, bounds[1:])):
        return False
    return all(p in bounds for p in problem.pins)


def family_spec(family: str, ranks: int, microbatches: int, chunks: int | None = None,
                name: str = "partition") -> PipelineSpec:
    """A pipeline template for a family (its placement, split and overlap defaults); stage
    costs are placeholders that `split_spec` replaces."""
    from ..lang.spec import FAMILY_PLACEMENT, OVERLAP_FAMILIES, SPLIT_FAMILIES

    placement = FAMILY_PLACEMENT[family]
    chunks = chunks or {"interleaved": 2, "v": 2}.get(placement, 1)
    stages = ranks * chunks
    return PipelineSpec(name, ranks, microbatches, family, placement, chunks,
                        family in SPLIT_FAMILIES, family in OVERLAP_FAMILIES,
                        (StageCost(),) * stages, (1.0,) * stages)
