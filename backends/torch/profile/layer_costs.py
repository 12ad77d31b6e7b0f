"""Per-layer costs of a `build_layers()` model (`schedc run --profile` on such a model): each layer
timed as a stage of its own (`stage_times.profile_stages`), with the memory it holds, as the JSON
layer description `schedc partition` reads.
"""

from __future__ import annotations

import torch

from ..layers import named_layers
from .stage_times import profile_stages


def profile_layers(model, dtype, repeats: int = 20) -> list[dict]:
    """The model's layers measured one by one, as the JSON layer description `schedc partition`
    reads: milliseconds (fastest-tenth means, stage_times.py) of F, B (full) and W, and in MiB the
    parameters and the activations a forward leaves saved for its backward (parameters excluded)."""
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
