"""The splits other frameworks would choose for the same layers, to set beside ours.

Each anchor is a pure function from the layer model (and the stage count) to bounds, written
after the rule the framework documents:
- `uniform_bounds`: Megatron-LM's default: the transformer blocks divided evenly over the stages
  (the earlier stages take any remainder), the embedding joined to the first stage and the loss
  head (and MTP) to the last.
- `megatron_flag_bounds`: every split `--decoder-first-pipeline-num-layers a` and
  `--decoder-last-pipeline-num-layers b` can express (a, b >= 1; the middle stages share the rest
  evenly, which Megatron requires to divide); the caller keeps the best.
- `torchtitan_bounds`: torchtitan's `generate_llm_fqn_per_model_part` defaults: blocks plus an
  input and an output weight of 1 form "effective layers", spread evenly, extras to the earlier
  stages.
- `deepspeed_parameters_bounds`: DeepSpeed's `partition_method='parameters'`: its
  `partition_balanced` on the layers' parameter counts, a dynamic program that minimizes the
  largest minus the smallest stage sum (not the largest), taking the last of equal choices.
"""

from __future__ import annotations

from typing import Sequence

from ..lang.layers import LayerModel
from .minmax import prefix_sums


def body_range(model: LayerModel) -> tuple[int, int]:
    """[start, end) of the repeated blocks: after leading embeddings, before trailing heads/MTP."""
    kinds = [layer.kind for layer in model.layers]
    start, end = 0, len(kinds)
    while start < end and kinds[start] == "E":
        start += 1
    while end > start and kinds[end - 1] in ("L", "m"):
        end -= 1
    return start, end


def _even(count: int, parts: int) -> list[int]:
    """`count` items in `parts` groups, sizes differing by at most one, larger ones first."""
    base, extra = divmod(count, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def _bounds_from_sizes(first: int, sizes: Sequence[int], total: int) -> tuple[int, ...] | None:
    """Stage sizes of the body, the pre layers joined to the first stage and the post layers
    to the last; None when a stage would be empty."""
    bounds = [0]
    at = first
    for size in sizes[:-1]:
        at += size
        bounds.append(at)
    bounds.append(total)
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        return None
    return tuple(bounds)


def uniform_bounds(model: LayerModel, stages: int) -> tuple[int, ...] | None:
    start, end = body_range(model)
    if end - start < stages:
        sizes = _even(len(model), stages)
        return _bounds_from_sizes(0, sizes, len(model))
    return _bounds_from_sizes(start, _even(end - start, stages), len(model))


def megatron_flag_bounds(model: LayerModel, stages: int) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """((a, b), bounds) for every first/last-stage layer count Megatron accepts."""
    start, end = body_range(model)
    blocks, found = end - start, []
    if stages < 2:
        return found
    for a in range(1, blocks):
        for b in range(1, blocks - a + 1):
            rest, middle = blocks - a - b, stages - 2
            if (middle == 0 and rest != 0) or (middle and (rest % middle or rest < middle)):
                continue
            sizes = [a] + [rest // middle if middle else 0] * middle + [b]
            bounds = _bounds_from_sizes(start, sizes, len(model))
            if bounds:
                found.append(((a, b), bounds))
    return found


def torchtitan_bounds(model: LayerModel, stages: int, input_weight: int = 1,
                      output_weight: int = 1) -> tuple[int, ...] | None:
    start, end = body_range(model)
    blocks = end - start
    effective = _even(blocks + input_weight + output_weight, stages)
    if stages == 1:
        return (0, len(model))
    sizes = [effective[0] - input_weight, *effective[1:-1], effective[-1] - output_weight]
    if any(size < 0 for size in sizes):
        return None
    return _bounds_from_sizes(start, sizes, len(model))


def deepspeed_balanced(weights: Sequence[float], parts: int) -> tuple[int, ...]:
    """DeepSpeed's `partition_balanced`: the split minimizing (largest - smallest) stage sum,
    by its dynamic program over (layers, parts), keeping the last k of equal cost."""
    n = len(weights)
    if n <= parts:
        return tuple(min(p, n) for p in range(parts + 1))
    prefix, inf = prefix_sums(weights), float("inf")
    cost = [[inf] * (parts + 1) for _ in range(n + 1)]
    high = [[inf] * (parts + 1) for _ in range(n + 1)]
    low = [[inf] * (parts + 1) for _ in range(n + 1)]
    where = [[0] * (parts + 1) for _ in range(n + 1)]
    cost[0][0], high[0][0] = 0.0, 0.0
    for i in range(1, n + 1):
        for j in range(1, min(i, parts) + 1):
            for k in range(i):
                part = prefix[i] - prefix[k]
                top, bottom = max(high[k][j - 1], part), min(low[k][j - 1], part)
                if cost[i][j] >= top - bottom:
                    cost[i][j], high[i][j], low[i][j], where[i][j] = top - bottom, top, bottom, k
    bounds = [n]
    for j in range(parts, 0, -1):
        bounds.append(where[bounds[-1]][j])
    return tuple(reversed(bounds))


def deepspeed_parameters_bounds(model: LayerModel, stages: int) -> tuple[int, ...]:
    return deepspeed_balanced([layer.params for layer in model.layers], stages)
