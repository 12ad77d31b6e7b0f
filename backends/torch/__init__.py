"""The torch backend: run a compiled schedc plan on a real model under torchrun.

    from schedc.backends.torch import PipelineRunner
    runner = PipelineRunner(spec, plan, rank, build_stages, loss_fn)   # in each rank's process
    losses = runner.step(inputs, targets)                               # one training step

`schedc-rank FILE --model MODEL.py` (`python -m schedc.backends.torch`) is the per-rank program
that `schedc run` starts under torchrun. compute.py holds a stage's compute, which the runner
executes and profiler.py times (commprobe.py the transfers, costblock.py the cost block made from
both, calibrate.py the block recalibrated from a traced run); check.py is `--check`, watch.py the store heartbeat and watchdog, measure.py the measured
trace.

May import everything in schedc below cli/, and torch. Must not import cli/. options.py (the
per-rank options `schedc run` shares) imports neither torch nor the runner, so importing this
package loads the runner (and torch) only when `PipelineRunner` or `plan_digest` is first used.
"""

__all__ = ["PipelineRunner", "plan_digest"]


def __getattr__(name: str):
    if name == "PipelineRunner":
        from .runner import PipelineRunner

        return PipelineRunner
    if name == "plan_digest":
        from .transfers import plan_digest

        return plan_digest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
