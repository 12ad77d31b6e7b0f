"""A model described as layers, and the devices it runs on: the input of stage partitioning.

`LayerModel` is what both readers build (the `.sched` `layers { }` block here, the JSON file in
`schedc.partition.layers_json`): a tuple of `Layer`s in model order, every run of identical layers
already expanded (`block * 32` becomes `block.0` .. `block.31`). `Devices` holds one relative
speed and one memory limit per rank. Both are frozen values; spans are kept for error messages
and excluded from equality.

This module imports only the ground floor (errors); the language and the partitioner both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Diagnostic, SchedError, Span

# Megatron's --pipeline-model-parallel-layout letters: embedding, transformer block, MTP, loss.
KINDS = ("E", "t", "m", "L")
MAX_LAYERS = 100_000  # a model description longer than this is a mistyped repeat


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: its op times on a device of speed 1, and its memory.

    `backward` is the full backward (I + W); `activation` is what one microbatch's forward leaves
    held until its backward (per microbatch); `params` is the layer's parameter memory (held
    once per replica). `kind` is the Megatron layout letter.
    """

    name: str
    forward: float
    backward: float
    weight: float
    activation: float = 0
    params: float = 0
    kind: str = "t"
    span: Span | None = field(default=None, compare=False, hash=False)

    @property
    def time(self) -> float:
        """Forward plus full backward: the layer's work per microbatch."""
        return self.forward + self.backward


@dataclass(frozen=True, slots=True)
class LayerModel:
    """Layers in model order (repeats expanded). Invariant: names are unique, costs >= 0."""

    layers: tuple[Layer, ...]
    span: Span | None = field(default=None, compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def index(self, name: str) -> int | None:
        """The position of the layer called `name`, or None."""
        return next((i for i, layer in enumerate(self.layers) if layer.name == name), None)


@dataclass(frozen=True, slots=True)
class Devices:
    """Per rank: relative speed (op times divide by it) and memory limit (None: unlimited)."""

    speeds: tuple[float, ...]
    limits: tuple[float | None, ...]
    span: Span | None = field(default=None, compare=False, hash=False)

    @staticmethod
    def uniform(ranks: int, limit: float | None = None) -> "Devices":
        return Devices((1.0,) * ranks, (limit,) * ranks)


def _error(message: str, span: Span | None) -> SchedError:
    return SchedError([Diagnostic(message, span)])


def layer_defaults(name: str, values: dict[str, float], span: Span | None) -> dict[str, float]:
    """F is required; B defaults to 2F, W to B/2 (the simple model); W must not exceed B."""
    if "F" not in values:
        raise _error(f"layer '{name}' has no forward time: give it F (B defaults to 2F, W to B/2)", span)
    forward = values["F"]
    backward = values.get("B", 2 * forward)
    weight = values.get("W", backward / 2)
    if weight > backward:
        raise _error(f"layer '{name}': W = {weight:g} is larger than the full backward B = "
                     f"{backward:g}; B is the full backward (I + W), so W <= B", span)
    return {"forward": forward, "backward": backward, "weight": weight,
            "activation": values.get("activation", 0), "params": values.get("params", 0)}


def default_kind(name: str, index: int, count: int) -> str:
    """The Megatron letter for a layer that does not say: an embedding first, a head or loss
    last, an MTP layer by name, else a transformer block."""
    low = name.lower()
    if index == 0 and "emb" in low:
        return "E"
    if index == count - 1 and any(w in low for w in ("head", "loss", "output")):
        return "L"
    return "m" if low.startswith("mtp") else "t"


def expand_run(name: str, repeat: int, values: dict, kind: str | None, span: Span | None,
               first_index: int, total: int) -> list[Layer]:
    """One described entry as layers: `repeat` copies named `name.0` .. (or `name` when 1)."""
    if first_index + repeat > MAX_LAYERS:
        raise _error(f"this model has {total:,} layers; schedc partitions up to {MAX_LAYERS:,} (is a "
                     "repeat count mistyped?)", span)
    costs = layer_defaults(name, values, span)
    names = [name] if repeat == 1 else [f"{name}.{k}" for k in range(repeat)]
    return [Layer(n, **costs, kind=kind or default_kind(n, first_index + k, total), span=span)
            for k, n in enumerate(names)]


def check_unique(layers: list[Layer]) -> None:
    """Layer names are unique (a located error at the second one)."""
    seen: dict[str, Layer] = {}
    for layer in layers:
        if layer.name in seen:
            raise _error(f"two layers are called '{layer.name}'; layer names must be unique "
                         "(a model file's build_layers() is matched by name)", layer.span)
        seen[layer.name] = layer


@dataclass(frozen=True, slots=True)
class LayeredStages:
    """A pipeline whose stages are cut from layers (`stages = auto`): the model, the devices, the
    layers that must start a stage, the fewest layers a stage may hold, and the chosen split
    (`bounds`, S+1 layer indices; None until the partitioner has chosen)."""

    model: LayerModel
    devices: Devices
    pins: tuple[int, ...] = ()
    min_layers: int = 1
    bounds: tuple[int, ...] | None = None
    span: Span | None = field(default=None, compare=False, hash=False)
