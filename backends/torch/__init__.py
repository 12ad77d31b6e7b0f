"""The torch backend: run a compiled schedc plan on a real model under torchrun.

    from schedc.backends.torch import PipelineRunner
    runner = PipelineRunner(spec, plan, rank, build_stages, loss_fn)   # in each rank's process
    losses = runner.step(inputs, targets)                               # one training step

`schedc-rank FILE --model MODEL.py` (`python -m schedc.backends.torch`) is the per-rank program
that `schedc run` starts under torchrun. The modules:
- __main__.py: the rank program (compile, agree on the plan, build the stages, train, --trace, --check);
- runner.py: `PipelineRunner`, which executes one rank's instruction list;
- compute.py: a stage's compute (forward, backward, the I/W split, an overlapped pair), which the
  runner executes and the profiler times;
- transfers.py: the plan digest, which sends a peer has certainly received, storage give-back;
- layers.py: stage modules from a model file's `build_stages`, or its `build_layers` by the split;
- model_file.py: `load_model`, the user's model file as a module;
- equivalence.py: `--check`, the pipelined run against a single-process one of the same model;
- measure.py: the measured trace of a run, and the measured step against the simulated one;
- watch.py: the store heartbeat and the watchdog that names a stuck peer;
- options.py: the per-rank options `schedc run` shares and hands on to the ranks;
- launch.py: how `schedc run` starts the ranks under torchrun, and checks the devices first;
- expert_loads.py: tokens per expert counted from a MoE router, and routing to a placement's replicas;
- profile/: `schedc run --profile` (stage and transfer timings, the cost block, its calibration).

Must not import cli/. options.py and launch.py (which the command line imports) import neither
torch nor the runner, so importing this package loads the runner (and torch) only when
`PipelineRunner` or `plan_digest` is first used.

May import: errors, ir, lang, simulate, compiler, partition, experts
Libraries at module level: torch
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
