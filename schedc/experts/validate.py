"""Argument checks shared by every policy: each failure is a `SchedError` that names the argument
and says what is allowed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import Diagnostic, SchedError


FLAGS = {"num_replicas": "--replicas", "num_groups": "--groups", "num_nodes": "--nodes",
         "num_gpus": "--gpus"}  # the command line's name of each argument, named in messages too


def fail(message: str) -> SchedError:
    """A `SchedError` with one unlocated diagnostic."""
    return SchedError([Diagnostic(message)])


@dataclass(frozen=True, slots=True)
class Shape:
    """The checked sizes of one balancing problem."""

    layers: int
    experts: int
    replicas: int
    groups: int
    nodes: int
    gpus: int
    hierarchical: bool

    @property
    def slots_per_gpu(self) -> int:
        return self.replicas // self.gpus

    @property
    def domains(self) -> int:
        """Nodes when hierarchical, else 1: the units whose experts never leave them."""
        return self.nodes if self.hierarchical else 1


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise fail(f"{name} ({FLAGS[name]}) must be a positive integer, got {value!r}")
    return int(value)


def check_weight(weight) -> np.ndarray:
    """`weight: [layers, experts]` as float64; refuses other ranks, NaN, infinities, negatives."""
    try:
        array = np.asarray(weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(f"weight must be a [layers, experts] array of numbers ({exc})") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise fail(f"weight must be a non-empty [layers, experts] array, got shape {list(array.shape)}")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        layer, expert = (int(i) for i in np.argwhere(bad)[0])
        raise fail(f"weight[{layer}, {expert}] = {float(array[layer, expert])!r}: loads must be finite "
                   f"numbers >= 0 ({int(bad.sum())} bad value{'s' if bad.sum() > 1 else ''})")
    return array


def check_shape(weight: np.ndarray, num_replicas, num_groups, num_nodes, num_gpus,
                hierarchical: bool | None) -> Shape:
    """The sizes, checked against each other; `hierarchical=None` follows DeepSeek's rule
    (hierarchical when the groups divide evenly over the nodes)."""
    replicas = _positive_int("num_replicas", num_replicas)
    groups = _positive_int("num_groups", num_groups)
    nodes = _positive_int("num_nodes", num_nodes)
    gpus = _positive_int("num_gpus", num_gpus)
    layers, experts = weight.shape
    if replicas % gpus:
        raise fail(f"num_replicas (--replicas) = {replicas} must be a multiple of num_gpus (--gpus) = {gpus} "
                   f"(each GPU holds the same number of slots); try {gpus * -(-replicas // gpus)}")
    if replicas < experts:
        raise fail(f"num_replicas (--replicas) = {replicas} is less than the {experts} experts: every expert "
                   "needs at least one slot")
    if experts % groups:
        raise fail(f"num_groups (--groups) = {groups} must divide the {experts} experts evenly")
    if gpus % nodes:
        raise fail(f"num_gpus (--gpus) = {gpus} must be a multiple of num_nodes (--nodes) = {nodes}")
    if hierarchical is None:
        hierarchical = groups % nodes == 0
    if hierarchical and groups % nodes:
        raise fail(f"hierarchical balancing needs num_groups (--groups) = {groups} to be a multiple of "
                   f"num_nodes (--nodes) = {nodes} (each node takes whole groups); use the global policy")
    return Shape(layers, experts, replicas, groups if hierarchical else 1,
                 nodes if hierarchical else 1, gpus, bool(hierarchical))


def check_no_duplicates(shape: Shape) -> None:
    """With at most one replica of an expert per GPU, each domain must still fill its slots."""
    per_domain_experts = shape.experts // shape.domains
    per_domain_gpus = shape.gpus // shape.domains
    if per_domain_experts * per_domain_gpus < shape.replicas // shape.domains:
        raise fail(f"{shape.replicas} slots cannot be filled without two replicas of one expert on "
                   f"a GPU: {per_domain_experts} experts x {per_domain_gpus} GPUs per "
                   f"{'node' if shape.hierarchical else 'placement'} is fewer; pass "
                   "allow_duplicates=True (CLI: --allow-duplicates)")


def check_speeds(speeds, gpus: int) -> np.ndarray:
    """Per-GPU relative speeds `[gpus]` (default all 1), finite and > 0."""
    if speeds is None:
        return np.ones(gpus)
    try:
        array = np.asarray(speeds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise fail(f"speeds must be {gpus} numbers, one per GPU ({exc})") from None
    if array.size != gpus:
        raise fail(f"speeds has {array.size} values, but num_gpus (--gpus) = {gpus}: give one per GPU")
    if not (np.isfinite(array) & (array > 0)).all():
        raise fail(f"speeds must be finite numbers > 0, got {array.tolist()}")
    return array


def check_previous(previous, shape: Shape) -> np.ndarray:
    """A previous `phy2log: [layers, replicas]` of expert ids, every expert present per layer."""
    try:
        array = np.asarray(previous, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(f"previous placement must be a [layers, replicas] array of expert ids ({exc})") from None
    want = [shape.layers, shape.replicas]
    if list(array.shape) != want:
        raise fail(f"previous placement has shape {list(array.shape)}, but the loads need {want} "
                   f"([layers, replicas] = [{shape.layers}, {shape.replicas}]; --previous)")
    if not (np.isfinite(array).all() and (array == np.round(array)).all()
            and array.min() >= 0 and array.max() < shape.experts):
        raise fail(f"previous placement must hold expert ids 0..{shape.experts - 1}")
    ids = array.astype(np.int64)
    offsets = (ids + shape.experts * np.arange(shape.layers)[:, None]).ravel()
    absent = np.bincount(offsets, minlength=shape.layers * shape.experts) == 0
    if absent.any():
        layer, expert = divmod(int(np.flatnonzero(absent)[0]), shape.experts)
        raise fail(f"previous placement, layer {layer}: expert {expert} has no slot "
                   "(every expert needs at least one)")
    return ids
