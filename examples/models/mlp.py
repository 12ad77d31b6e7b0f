"""A small MLP cut into pipeline stages, for schedc's torch backend (`schedc run --model`).

A model file defines:
- `build_stages(num_stages)`: every stage's module, deterministically (each rank calls it);
- `loss_fn(output, target)`: applied on the last stage, per microbatch;
- `make_batch(microbatches)`: (inputs, targets), one tensor per microbatch.
"""

import torch

WIDTH, ROWS = 16, 4


def build_stages(num_stages):
    torch.manual_seed(0)
    return [torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh()) for _ in range(num_stages)]


def loss_fn(output, target):
    return torch.nn.functional.mse_loss(output, target, reduction="sum")


def make_batch(microbatches, step=0):
    generator = torch.Generator().manual_seed(1234 + step)
    inputs = [torch.randn(ROWS, WIDTH, generator=generator) for _ in range(microbatches)]
    targets = [torch.randn(ROWS, WIDTH, generator=generator) for _ in range(microbatches)]
    return inputs, targets
