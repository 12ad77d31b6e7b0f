"""An MLP big enough that compute dominates a step on CPU: `LAYERS` Linear-GELU layers of
`WIDTH`, cut into equal stages (the same model for 2 or 4 stages, so 1F1B and DualPipeV run the same
work). Used by benchmarks/profile_validation.py to check that `--profile` predicts a real step.
See examples/models/mlp.py for what a model file must define.
"""

import torch

LAYERS, WIDTH, ROWS = 8, 512, 512


def build_stages(num_stages):
    if LAYERS % num_stages:
        raise ValueError(f"{LAYERS} layers do not cut into {num_stages} equal stages")
    torch.manual_seed(0)
    per_stage = LAYERS // num_stages
    return [torch.nn.Sequential(*[layer for _ in range(per_stage)
                                  for layer in (torch.nn.Linear(WIDTH, WIDTH), torch.nn.GELU())])
            for _ in range(num_stages)]


def loss_fn(output, target):
    return torch.nn.functional.mse_loss(output, target)


def make_batch(microbatches, step=0):
    generator = torch.Generator().manual_seed(7 + step)
    inputs = [torch.randn(ROWS, WIDTH, generator=generator) for _ in range(microbatches)]
    targets = [torch.randn(ROWS, WIDTH, generator=generator) for _ in range(microbatches)]
    return inputs, targets
