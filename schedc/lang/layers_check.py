"""Checking a pipeline's `layers { }` and `devices { }` blocks (with `stages = auto`) into a
`LayeredStages`, every error at its place.

With `stages = auto` the stage costs and activations come from the layers: a cost block may set
only `comm`, a memory block only `limit`. Until the partitioner chooses (schedc.partition, called
by `schedc.load` and the command line), the spec carries the costs of the uniform split, so it
is complete and compiles.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import Note, Span
from .layers import KINDS, Devices, LayeredStages, LayerModel, check_unique, expand_run
from .spec import PipelineSpec, StageCost
from .values import find_block, located_error, suggest, to_bool, to_int, to_number, unique_settings
from .syntax import LayerItem, PipelineAST, Setting

LAYER_KEYS = ("F", "B", "W", "activation", "params", "kind", "starts_stage")
DEVICE_KEYS = ("speed", "limit")


def with_layers(spec: PipelineSpec, ast: PipelineAST, settings: dict[str, Setting]) -> PipelineSpec:
    """`spec` with its stages cut from the layers block (placeholder: the uniform split)."""
    stages = settings.get("stages")
    if stages is None:
        raise located_error("a layers block describes the model for the partitioner: add `stages = auto` to "
                   f"pipeline '{ast.name}'", ast.layers[0].span)
    if stages.value.lower() != "auto":
        raise located_error(f"stages takes `auto` (choose the split by the simulated step), got '{stages.value}'",
                   stages.value_span)
    if not ast.layers:
        raise located_error("stages = auto needs a `layers { ... }` block describing the model", stages.value_span)
    if len(ast.layers) > 1:
        raise located_error("more than one layers block; list every layer in one", ast.layers[1].span,
                   Note("first one here", ast.layers[0].span))
    _only(ast, "cost", ("comm",), "the stage costs come from the layers")
    _only(ast, "memory", ("limit",), "the activations come from the layers")
    model = _model(ast.layers[0].items, ast.layers[0].span)
    if len(model) < spec.num_stages:
        raise located_error(f"{len(model)} layers cannot fill {spec.num_stages} stages ({spec.ranks} ranks, "
                   f"placement {spec.placement}): each stage needs at least one layer",
                   ast.layers[0].span)
    min_layers = to_int(settings["min_stage_layers"]) if "min_stage_layers" in settings else 1
    pins = tuple(i for i, layer in enumerate(model.layers) if layer.span in _pinned_spans(ast))
    layered = LayeredStages(model, _devices(ast, spec), tuple(sorted(set(pins) - {0})), min_layers,
                            None, stages.span)
    return placeholder_costs(replace(spec, layers=layered))


def _pinned_spans(ast: PipelineAST) -> set[Span]:
    return {item.span for item in ast.layers[0].items
            for s in item.settings if s.key == "starts_stage" and to_bool(s)}


def _only(ast: PipelineAST, kind: str, keys: tuple[str, ...], why: str) -> None:
    for block in ast.blocks:
        if block.kind != kind:
            continue
        for s in block.settings:
            if s.key not in keys:
                raise located_error(f"with stages = auto {why}: a {kind} block may set only "
                           f"{', '.join(keys)}", s.key_span)
        if block.overrides:
            raise located_error(f"with stages = auto {why}: no per-stage {kind} overrides", block.overrides[0].span)


def _model(items: tuple[LayerItem, ...], span: Span) -> LayerModel:
    total, layers = sum(item.repeat for item in items), []
    for item in items:
        if item.repeat < 1:
            raise located_error("a run of layers repeats at least once", item.repeat_span)
        values = unique_settings(item.settings, f" in layer '{item.name}'")
        for key, s in values.items():
            if key not in LAYER_KEYS:
                raise located_error(f"unknown layer setting '{key}'{suggest(key, LAYER_KEYS)} (known: "
                           f"{', '.join(LAYER_KEYS)})", s.key_span)
        numbers = {k: to_number(s) for k, s in values.items() if k not in ("kind", "starts_stage")}
        kind = values.get("kind")
        if kind is not None and kind.value not in KINDS:
            raise located_error(f"kind is one of {', '.join(KINDS)} (Megatron's layout letters: embedding, "
                       f"transformer block, MTP, loss), got '{kind.value}'", kind.value_span)
        layers += expand_run(item.name, item.repeat, numbers, kind.value if kind else None, item.span,
                             len(layers), total)
    check_unique(layers)
    return LayerModel(tuple(layers), span)


def _devices(ast: PipelineAST, spec: PipelineSpec) -> Devices:
    block = find_block(ast, "devices")
    base = {"speed": 1.0, "limit": spec.memory_limit}
    rows = [dict(base) for _ in range(spec.ranks)]
    if block is None:
        return Devices(tuple(r["speed"] for r in rows), tuple(r["limit"] for r in rows))
    for key, s in unique_settings(block.settings, " in the devices block").items():
        for row in rows:
            row[key] = _device_value(s)
    for override in block.overrides:
        values = unique_settings(override.settings, " in this rank block")
        for rank, span in override.stages:
            if rank >= spec.ranks:
                raise located_error(f"rank {rank} does not exist: this pipeline has ranks 0..{spec.ranks - 1}", span)
            rows[rank].update({k: _device_value(s) for k, s in values.items()})
    return Devices(tuple(r["speed"] for r in rows), tuple(r["limit"] for r in rows), block.span)


def _device_value(s: Setting) -> float:
    if s.key not in DEVICE_KEYS:
        raise located_error(f"unknown device setting '{s.key}'{suggest(s.key, DEVICE_KEYS)} (known: "
                   f"{', '.join(DEVICE_KEYS)})", s.key_span)
    value = to_number(s)
    if s.key == "speed" and not value > 0:
        raise located_error(f"a device speed must be > 0 (a relative speed: 2 = twice as fast), got {s.value}",
                   s.value_span)
    return value


def stage_values(layered: LayeredStages, spec: PipelineSpec, bounds: tuple[int, ...]):
    """Stage costs (at each stage's rank speed) and activations of a split."""
    layers, costs, acts = layered.model.layers, [], []
    comm = spec.costs[0].comm if spec.costs else 0
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        speed, part = layered.devices.speeds[spec.rank_of(0, s)], layers[a:b]
        costs.append(StageCost(sum(x.forward for x in part) / speed, sum(x.backward for x in part) / speed,
                               sum(x.weight for x in part) / speed, None, comm))
        acts.append(sum(x.activation for x in part))
    return tuple(costs), tuple(acts)


def placeholder_costs(spec: PipelineSpec) -> PipelineSpec:
    """The spec with the costs of the uniform split (equal layer counts per stage)."""
    n, stages = len(spec.layers.model), spec.num_stages
    bounds = tuple(round(k * n / stages) for k in range(stages + 1))
    costs, acts = stage_values(spec.layers, spec, bounds)
    return replace(spec, costs=costs, activations=acts)


def with_split(spec: PipelineSpec, bounds: tuple[int, ...]) -> PipelineSpec:
    """The spec with the chosen split's stage costs and activations, and the split recorded."""
    costs, acts = stage_values(spec.layers, spec, bounds)
    return replace(spec, costs=costs, activations=acts, layers=replace(spec.layers, bounds=bounds))
