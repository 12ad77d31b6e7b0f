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


def profile_layers(model, dtype, repeats: int = 20) -> list[dict]:
    """The model's layers measured one by one, as the JSON layer description `schedc partition`
    reads: milliseconds (interquartile means, profiler.py) of F, B (full) and W, and in MiB the parameters and the
    activations a forward leaves saved for its backward (parameters excluded)."""
    from .profiler import profile_stages

    layers = named_layers(model)
    modules = [m.to(dtype) for m in layers.values()]

    class AsStages:  # profile_stages measures "stages": here every layer is one
        loss_fn, make_batch = staticmethod(model.loss_fn), staticmethod(model.make_batch)

        @staticmethod
        def build_stages(_num_stages):
            return modules

    times = [p.figures for p in profile_stages(AsStages, len(modules), dtype, repeats=repeats)]
    x = model.make_batch(1)[0][0].to(dtype)
    saved = _saved_mib(modules, x)
    return [{"name": name, "F": round(t["F"].ms, 4), "B": round(t["B"].ms, 4),
             "W": round(min(t["W"].ms, t["B"].ms), 4),
             "activation": round(held, 4), "params": round(_params_mib(module), 4)}
            for name, module, t, held in zip(layers, modules, times, saved)]


def _params_mib(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2 ** 20


def _saved_mib(modules: list[torch.nn.Module], x: torch.Tensor) -> list[float]:
    """Per module: MiB of the tensors its forward saves for the backward, parameters excluded."""
    held = []
    for module in modules:
        weights = {p.data_ptr() for p in module.parameters()}
        total = 0

        def pack(tensor, weights=weights):
            nonlocal total
            if tensor.data_ptr() not in weights:
                total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            x = module(x.detach().requires_grad_(True))
        held.append(total / 2 ** 20)
    return held
