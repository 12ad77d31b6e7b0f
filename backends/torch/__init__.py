"""The torch backend: run a compiled schedc plan on a real model under torchrun.

    from schedc.backends.torch import PipelineRunner
    runner = PipelineRunner(spec, plan, rank, build_stages, loss_fn)   # in each rank's process
    losses = runner.step(inputs, targets)                               # one training step

`python -m schedc.backends.torch FILE --model MODEL.py` is the per-rank entry point that
`schedc run` starts under torchrun.
"""

from .runner import PipelineRunner, plan_digest

__all__ = ["PipelineRunner", "plan_digest"]
