"""A small MLP given as named layers, for `stages = auto` (`schedc run --model`).

Instead of `build_stages(num_stages)`, this model file defines `build_layers()`: every layer with
the name the pipeline's layers block uses (examples/partition/mlp_layers.sched). schedc groups
them into stages by the split it chooses. `loss_fn` and `make_batch` are as in mlp.py.
"""

import torch

WIDTH, ROWS, BLOCKS = 16, 4, 6


def build_layers():
    torch.manual_seed(0)
    layers = [("embed", torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh()))]
    layers += [(f"block.{i}", torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh()))
               for i in range(BLOCKS)]
    layers.append(("head", torch.nn.Linear(WIDTH, WIDTH)))
    return layers


def loss_fn(output, target):
    return torch.nn.functional.mse_loss(output, target, reduction="sum")


def make_batch(microbatches, step=0):
    generator = torch.Generator().manual_seed(1234 + step)
    inputs = [torch.randn(ROWS, WIDTH, generator=generator) for _ in range(microbatches)]
    targets = [torch.randn(ROWS, WIDTH, generator=generator) for _ in range(microbatches)]
    return inputs, targets
