"""`--check`: the pipelined training run against a single-process one of the same model, on the
same microbatches, with the same optimizer, for the same steps.

A training step is forward, backward (gradients summed over the step's microbatches) and an
optimizer step: the model file's `make_optimizer(parameters)` when it defines one, else
`torch.optim.SGD(parameters, lr)`. Compared after the last step: every loss of the last step,
every parameter gradient of the last step, and every parameter. A NaN or inf on either side is a
failure naming where it appeared (a relative error would hide it: NaN compares false).
"""

from __future__ import annotations

import math

import torch

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def make_optimizer(model, parameters: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer | None:
    """The model file's optimizer over `parameters`, or SGD with `lr`; None when there are no
    parameters (a rank whose stages have none has nothing to step)."""
    if not parameters:
        return None
    if hasattr(model, "make_optimizer"):
        return model.make_optimizer(parameters)
    return torch.optim.SGD(parameters, lr=lr)


def batch(model, microbatches: int, step: int, dtype: torch.dtype):
    """The step's (inputs, targets) from the model file, in `dtype`."""
    inputs, targets = model.make_batch(microbatches, step)
    return [x.to(dtype) for x in inputs], [y.to(dtype) for y in targets]


def reference_run(model, num_stages: int, microbatches: int, steps: int, dtype: torch.dtype, lr: float,
                  build=None):
    """The single-process training run: (stages after the last step, last step's gradients per
    stage, last step's losses by microbatch). `build(n)` makes the stages (default: the model
    file's build_stages; a layered model's builder groups its layers by the split)."""
    stages = [m.to(dtype) for m in (build or model.build_stages)(num_stages)]
    optimizer = make_optimizer(model, [p for m in stages for p in m.parameters()], lr)
    for step in range(steps):
        for m in stages:
            m.zero_grad(set_to_none=True)
        losses = []
        for x, y in zip(*batch(model, microbatches, step, dtype)):
            out = x
            for m in stages:
                out = m(out)
            loss = model.loss_fn(out, y)
            loss.backward()
            losses.append(loss.detach())
        grads = [[None if p.grad is None else p.grad.clone() for p in m.parameters()] for m in stages]
        if optimizer is not None:
            optimizer.step()
    return stages, grads, losses


def not_finite(tensor: torch.Tensor | None) -> str | None:
    """'nan' or 'inf' when `tensor` holds one, else None."""
    if tensor is None or torch.isfinite(tensor).all():
        return None
    return "nan" if torch.isnan(tensor).any() else "inf"


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = want.norm().item()
    error = (got - want).norm().item()
    error = error / scale if scale else error
    return error if math.isfinite(error) else math.inf


def compare(rank: int, modules: dict, grads: dict, losses: dict, reference) -> tuple[float, list[str]]:
    """The largest relative error of this rank's (pipelined) figures against the reference, and
    where a NaN or inf appeared on either side. `modules`: (direction, stage) -> module after the
    last step; `grads`: the same keys -> that step's gradients (taken before the optimizer step)."""
    stages, ref_grads, ref_losses = reference
    worst, problems = 0.0, []
    for (d, s), module in modules.items():
        names = [n for n, _ in module.named_parameters()]
        pairs = [("gradient", grads[(d, s)], ref_grads[s]),
                 ("value after the last step", [p.detach() for p in module.parameters()],
                  [p.detach() for p in stages[s].parameters()])]
        for what, got, want in pairs:
            for name, g, w in zip(names, got, want):
                problems += _where(rank, f"stage {s}" + (f" (direction {d})" if d else "") + f", parameter "
                                   f"{name}: {what}", g, w)
                if g is not None and w is not None:
                    worst = max(worst, relative_error(g.cpu(), w))
    for j, loss in sorted(losses.items()):
        problems += _where(rank, f"loss of microbatch {j}", loss, ref_losses[j])
        worst = max(worst, relative_error(loss.cpu(), ref_losses[j]))
    return (math.inf if problems else worst), problems


def _where(rank: int, place: str, got, want) -> list[str]:
    found = []
    if not_finite(got):
        found.append(f"rank {rank}, {place} is {not_finite(got)} in the pipelined run")
    if not_finite(want):
        found.append(f"{place} is {not_finite(want)} in the single-process run")
    return found
