"""Stage modules from a model file: its own `build_stages(num_stages)`, or its `build_layers()`
grouped into stages by the split the partitioner chose (`stages = auto`).

`build_layers()` returns the model's layers with the names the layers block uses: a mapping
(dict, OrderedDict, torch.nn.ModuleDict) or a list of (name, module) pairs. Stage s is a
`torch.nn.Sequential` of the layers the split gives it, in the description's order. A name the
description uses that the model file does not define is a located error at that layer.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...errors import Diagnostic, SchedError
from ...lang.spec import PipelineSpec


def named_layers(model) -> dict[str, torch.nn.Module]:
    """`build_layers()` as an ordered name -> module mapping."""
    built = model.build_layers()
    items = built.items() if hasattr(built, "items") else built
    layers: dict[str, torch.nn.Module] = {}
    for entry in items:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError("build_layers() returns a mapping name -> module, or (name, module) pairs")
        layers[entry[0]] = entry[1]
    return layers


def group_layers(layers: dict[str, torch.nn.Module], spec: PipelineSpec) -> list[torch.nn.Module]:
    """One `Sequential` per stage, by the spec's chosen split."""
    layered = spec.layers
    model, bounds = layered.model, layered.bounds
    missing = [layer for layer in model.layers if layer.name not in layers]
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise SchedError([Diagnostic(
            f"layer '{first.name}'{more} is not defined by the model file's build_layers(), which "
            f"defines: {', '.join(list(layers)[:8])}{', ...' if len(layers) > 8 else ''}", first.span)])
    unused = [name for name in layers if model.index(name) is None]
    if unused:
        raise SchedError([Diagnostic(f"build_layers() defines '{unused[0]}', which the layers block does "
                                     "not list; describe every layer the model runs", layered.span)])
    return [torch.nn.Sequential(*(layers[model.layers[i].name] for i in range(a, b)))
            for a, b in zip(bounds, bounds[1:])]


def stage_builder(model, spec: PipelineSpec) -> Callable[[int], list[torch.nn.Module]]:
    """`build_stages(num_stages)` for the runner and the single-process reference."""
    if spec.layers is not None and spec.layers.bounds is not None:
        if not hasattr(model, "build_layers"):
            raise SchedError([Diagnostic("stages = auto cuts the model from its layers: the model file "
                                         "must define build_layers()", spec.layers.span)])

        def build(num_stages: int) -> list[torch.nn.Module]:
            return group_layers(named_layers(model), spec)

        return build
    if not hasattr(model, "build_stages"):
        raise SchedError([Diagnostic("the model file defines build_layers() but no build_stages(): "
                                     "describe the layers in the pipeline (`stages = auto` with a "
                                     "layers block) to group them into stages", spec.source.pipeline)])
    return model.build_stages
