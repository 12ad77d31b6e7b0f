"""Shared builders for the partitioner's tests: small layer models and brute-force oracles."""

from __future__ import annotations

from itertools import combinations

from schedc.lang.layers import Layer, LayerModel


def public_model() -> LayerModel:
    """The issue's public case: an embedding of cost 3, 32 blocks of cost 1, a head of cost 5
    (F only; B = 2F, W = F)."""
    layers = [Layer("embed", 3, 6, 3, kind="E")]
    layers += [Layer(f"layers.{i}", 1, 2, 1) for i in range(32)]
    layers.append(Layer("head", 5, 10, 5, kind="L"))
    return LayerModel(tuple(layers))


def model_of(forwards, activations=None, params=None) -> LayerModel:
    activations = activations or [0] * len(forwards)
    params = params or [0] * len(forwards)
    return LayerModel(tuple(Layer(f"l{i}", f, 2 * f, f, a, p)
                            for i, (f, a, p) in enumerate(zip(forwards, activations, params))))


def all_bounds(num_layers: int, stages: int):
    """Every split of `num_layers` layers into `stages` non-empty stages, in lexicographic order."""
    for cuts in combinations(range(1, num_layers), stages - 1):
        yield (0, *cuts, num_layers)
