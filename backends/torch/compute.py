"""The compute of one stage, shared by the runner (which executes a plan with it) and the profiler
(which times it): a forward, the full backward, the I/W split of the backward, and an overlapped
pair. These are the only places a stage's compute is written, so what `--profile` times is what a
run executes.

A stage's backward starts from a `Root`: the stage's input `x`, the tensor its backward starts
from (the output, or the loss on the last stage) and the gradient of that tensor (None for a
loss). The first stage has no input gradient (`has_input` False): its I is empty by design and its
W is the whole backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

try:  # private in torch, inside the range pinned in schedc/interop/torch_csv.py (TORCH_RUNTIME_RANGE)
    from torch.distributed.pipelining._backward import stage_backward_input, stage_backward_weight
except ImportError:  # pragma: no cover - older torch: the plain split below
    stage_backward_input = stage_backward_weight = None

SPLIT_WITH_TORCH_HELPERS = stage_backward_input is not None
OVERLAP_WAYS = ("streams", "sequential")  # an overlapped pair without a hook: how to run it


@dataclass
class Root:
    """Where a stage's backward starts: its input `x`, the output (or loss) `out`, and `grad`, the
    gradient of `out` (None when `out` is a loss)."""

    x: torch.Tensor
    out: torch.Tensor
    grad: torch.Tensor | None
    has_input: bool
    chunk: object = None  # the forward's `ChunkRun` when the stage ran by chunk parts


def stage_forward(module: torch.nn.Module, x: torch.Tensor, loss_fn: Callable | None = None,
                  target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The stage's forward: (output, loss); the loss only when `loss_fn` is given (last stage)."""
    out = module(x)
    return out, (loss_fn(out, target) if loss_fn is not None else None)


def full_backward(root: Root) -> torch.Tensor | None:
    """B: input and weight gradients in one `torch.autograd.backward`; returns the input gradient."""
    torch.autograd.backward(root.out, root.grad)
    return root.x.grad if root.has_input else None


def backward_input(module: torch.nn.Module, root: Root, use_helpers: bool | None = None):
    """I: the input gradient only. Returns (input gradient, what `backward_weight` needs).
    With PyTorch's pipelining helpers the gradients at the ops that use parameters are kept, so W
    does only the local weight work; without them W walks the stage's graph again."""
    use_helpers = SPLIT_WITH_TORCH_HELPERS if use_helpers is None else use_helpers
    if not root.has_input:  # no input gradient to compute: I is empty, W does the one backward
        return None, ("output", (root.out, root.grad))
    if use_helpers:
        grads = None if root.grad is None else [root.grad]
        inputs, groups = stage_backward_input([root.out], grads, [root.x], module.parameters())
        return inputs[0], ("groups", groups)
    input_grad = torch.autograd.grad(root.out, [root.x], root.grad, retain_graph=True)[0]
    return input_grad, ("output", (root.out, root.grad))


def backward_weight(module: torch.nn.Module, pending) -> None:
    """W: the weight gradients, accumulated into `.grad`, from what `backward_input` kept."""
    how, saved = pending
    if how == "chunk":  # an input-only backward by chunk parts kept each part's roots
        saved.weight(module.parameters())
        return
    if how == "groups":
        stage_backward_weight(module.parameters(), saved)
        return
    out, grad = saved
    params = [p for p in module.parameters() if p.requires_grad]
    for p, g in zip(params, torch.autograd.grad(out, params, grad)):
        p.grad = g if p.grad is None else p.grad + g


@dataclass
class Pair:
    """An overlapped pair: module0's forward on `x0` (with `loss_fn0`/`target0` on the last stage)
    beside module1's backward from `root1` (full B when `full1`, else I)."""

    module0: torch.nn.Module
    x0: torch.Tensor
    loss_fn0: Callable | None
    target0: torch.Tensor | None
    module1: torch.nn.Module
    root1: Root
    full1: bool = True


class OverlapHook(Protocol):
    """The optional hook a stage module's class may define (modelled on DeepSeek's DualPipe):

        @classmethod
        def overlapped_forward_backward(cls, module0, inputs0, criterion0, labels0,
                                        module1, loss1, outputs1, output_grads1):
            ...  # run module0's forward and module1's backward together
            return outputs0, loss0

    `criterion0`/`labels0` are given when module0 is the last stage (`loss0` is then its loss,
    else None); `loss1` is given when module1 is the last stage (then `outputs1` and
    `output_grads1` are None). The hook must leave module1's parameter gradients accumulated and
    the input of module1's forward with its `.grad` set, as `torch.autograd.backward` would.
    `outputs1` was sent, so its storage may have been given back (`release_storage`): it keeps
    its shape and its place in the graph, not its values; use it as the root of the backward.
    """


def overlap_hook(module: torch.nn.Module):
    """The stage class's `overlapped_forward_backward` (DualPipe's contract), or None."""
    return getattr(type(module), "overlapped_forward_backward", None)


def run_pair(pair: Pair, way: str, side_stream=None):
    """Run an overlapped pair: the hook when module0's class has one and the backward is full,
    else `way` ("streams": the forward on `side_stream` beside the backward on the current CUDA
    stream; "sequential": the forward, then the backward). Returns (output0, loss0, input
    gradient of module1's stage, what W needs or None)."""
    hook = overlap_hook(pair.module0)
    if hook is not None and pair.full1:
        return _run_hook(hook, pair)
    if way == "streams":
        return _run_on_two_streams(pair, side_stream)
    out0, loss0 = stage_forward(pair.module0, pair.x0, pair.loss_fn0, pair.target0)
    return (out0, loss0, *_backward_half(pair))


def _backward_half(pair: Pair):
    if pair.full1:
        return full_backward(pair.root1), None
    return backward_input(pair.module1, pair.root1)


def _run_hook(hook, pair: Pair):
    root = pair.root1
    loss1 = root.out if root.grad is None else None
    outputs1 = None if root.grad is None else root.out
    out0, loss0 = hook(pair.module0, pair.x0, pair.loss_fn0, pair.target0, pair.module1, loss1, outputs1,
                       root.grad)
    return out0, loss0, (root.x.grad if root.has_input else None), None


def _run_on_two_streams(pair: Pair, side):
    """The forward on a side stream, the backward on the current one, so the GPU runs them
    together. Autograd runs each backward op on the stream its forward ran on, so the later
    backward of this forward stays on the side stream, ordered by autograd against the caller."""
    current = torch.cuda.current_stream(side.device)
    side.wait_stream(current)  # the forward's input (received or handed over) is ready
    with torch.cuda.stream(side):
        out0, loss0 = stage_forward(pair.module0, pair.x0, pair.loss_fn0, pair.target0)
    input_grad, pending = _backward_half(pair)
    current.wait_stream(side)
    # tell the caching allocator who else reads these blocks, so none is reused too early
    pair.x0.record_stream(side)  # the input, read again by the backward
    for tensor in (out0, loss0):
        if tensor is not None:
            tensor.record_stream(current)
    return out0, loss0, input_grad, pending
