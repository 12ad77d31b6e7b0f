"""`schedc run`: execute a plan on a torch model under torchrun, or profile the model's stages.

The launcher checks its arguments, compiles and verifies the plan, and checks the devices before
starting torchrun (so nothing starts that would fail on every rank); it passes torchrun's
multi-node options through and starts each rank as the installed `schedc-rank` entry point. How
the ranks start, and how a failed run is reported in one line instead of torchrun's own traceback,
is the backend's (schedc.backends.torch.launch); `--profile` is its profile driver
(schedc.backends.torch.profile.driver). This module handles the arguments and the output files.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backends.torch.launch import device_problem, overlap_problem, run_torchrun, torchrun_command
from ..backends.torch.options import add_rank_options, non_negative_int, positive_float, positive_int
from ..compiler import compile_spec
from ..errors import SchedError
from ..lang.spec import PipelineSpec
from ..lang.writer import replace_cost_block
from .common import UsageError, load_specs, select_pipelines, write_output

TORCH_NEEDED = "this command needs torch: pip install 'schedc[torch]'"


def require_torch() -> None:
    """Refuse, with the install command, when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError(TORCH_NEEDED) from None


def cmd_run(args) -> int:
    """Start `torchrun` with one process per rank, each running `schedc.backends.torch`."""
    require_torch()
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    nproc = _processes_per_node(spec, args)
    if not Path(args.model).is_file():
        raise UsageError(f"cannot read the model file '{args.model}'")
    if args.profile_out and not args.profile:
        raise UsageError("--profile-out writes what --profile measures: add --profile")
    if args.profile:
        return _profile(spec, args)
    compiled = compile_spec(spec)  # once, here: a plan that does not verify starts nothing
    if getattr(compiled.search, "interrupted", False):  # nor does a search cut short by Ctrl-C
        raise KeyboardInterrupt
    problem = device_problem(nproc, args.device, args.comm) or overlap_problem(args) or _rebalance_problem(args)
    if problem:
        raise UsageError(problem)
    _check_model(spec, args)
    for_ranks = argparse.Namespace(**{**vars(args), "trace": args.trace and str(Path(args.trace).resolve())})
    command = torchrun_command(nproc, args.file, spec.name, args, for_ranks)
    print("schedc: " + " ".join(command[2:]), file=sys.stderr)
    return run_torchrun(command)


def _check_model(spec: PipelineSpec, args) -> None:
    """Load the model file and build its stages once, here, before anything starts: a model that
    fails (a syntax error, an exception in build_stages, a layer the layers block names that it
    lacks) is reported once, with its own traceback, instead of by every rank; with --ep, the
    experts and the microbatches must cut in --ep parts. The stages are built as rank 0's would be
    (RANK, LOCAL_RANK and WORLD_SIZE set so while they are), for model files that read them."""
    import os
    import traceback

    import torch

    from ..backends.torch.equivalence import batch
    from ..backends.torch.expert_parallel.groups import experts_problem, slicing_problem
    from ..backends.torch.layers import stage_builder
    from ..backends.torch.model_file import load_model

    saved = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE=str(spec.ranks * args.ep))
    try:
        model = load_model(args.model)
        stages = stage_builder(model, spec)(spec.num_stages)
        microbatch = batch(model, 1, 0, getattr(torch, args.dtype))[0][0] if args.ep > 1 else None
    except (SystemExit, KeyboardInterrupt, SchedError):
        raise
    except Exception:  # noqa: BLE001 - the user's code failed: its own traceback, once
        traceback.print_exc()
        raise UsageError(f"the model file '{args.model}' failed (its traceback is above); nothing was "
                         "started") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    problem = experts_problem(stages, args.ep) or (slicing_problem(microbatch, args.ep) if args.ep > 1 else None)
    if not problem and args.rebalance_every:
        from ..backends.torch.expert_parallel.live import rebalancing_problem
        problem = rebalancing_problem(stages, args.ep, args.redundant or 0)
    if problem:
        raise UsageError(problem)


def _rebalance_problem(args) -> str | None:
    """Why the live-balancing options cannot be used as given, or None."""
    if not args.rebalance_every:
        given = [flag for flag in ("--window", "--redundant", "--max-moves", "--balance-tolerance", "--load-log")
                 if getattr(args, flag[2:].replace("-", "_")) is not None]
        return f"{given[0]} tunes live expert balancing: add --rebalance-every N" if given else None
    if args.load_log and Path(args.load_log).exists() and (not Path(args.load_log).is_dir()
                                                            or any(Path(args.load_log).iterdir())):
        return (f"--load-log {args.load_log}: already exists and is not an empty folder; name a new folder "
                "(nothing is overwritten)")
    return None


def _processes_per_node(spec: PipelineSpec, args) -> int:
    """Processes per node: --nproc, else the pipeline's ranks times --ep over --nnodes; one process
    per rank and EP member in all."""
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise UsageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (where node 0 listens), the same on "
                         "every node")
    if args.node_rank >= args.nnodes:
        raise UsageError(f"--node-rank {args.node_rank}, but --nnodes {args.nnodes}: node ranks are "
                         f"0..{args.nnodes - 1}")
    processes = spec.ranks * args.ep
    nproc = args.nproc or processes // args.nnodes
    if nproc * args.nnodes != processes:
        per = f"ranks = {spec.ranks} and --ep {args.ep}: {processes} processes" if args.ep > 1 else \
            f"ranks = {spec.ranks}: one process per rank"
        raise UsageError(f"{args.nnodes} node(s) x {nproc} process(es), but the pipeline has {per}")
    return nproc


def _profile(spec: PipelineSpec, args) -> int:
    """`profile.driver.profile`: time the model's stages and print the figures and the cost block;
    with --profile-out, write the block into a copy of the file."""
    from ..backends.torch.profile.driver import ProfileError, profile

    try:
        block = profile(spec, args)
    except ProfileError as error:
        raise UsageError(str(error)) from None
    if block is not None and args.profile_out:
        text = Path(args.file).read_text(encoding="utf-8")
        write_output(replace_cost_block(text, spec.source.ast, block), args.profile_out,
               [] if args.force else [args.file], force=args.force)
    return 0


def register(sub) -> None:
    """Add run to the `schedc` parser's subcommands."""
    p = sub.add_parser("run", help="execute the plan on a torch model under torchrun (gloo on CPU)")
    p.add_argument("file")
    p.add_argument("--model", required=True, help="a model file defining build_stages, loss_fn and "
                   "make_batch (see examples/models/mlp.py)")
    p.add_argument("--pipeline")
    p.add_argument("--nproc", type=positive_int, help="processes on this node (default: the pipeline's ranks "
                   "over --nnodes)")
    p.add_argument("--nnodes", type=positive_int, default=1, help="nodes (torchrun's option, passed through); "
                   "start `schedc run` on each with its --node-rank")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank, 0..nnodes-1 (static rendezvous)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the nodes meet (node 0's address and a "
                   "free port), the same on every node")
    p.add_argument("--rdzv-backend", choices=("static", "c10d"), default="static", help="torchrun's rendezvous: "
                   "static (node ranks given) or c10d")
    add_rank_options(p)
    p.add_argument("--profile", action="store_true", help="measure the model's per-stage F, B, I, W, F&B "
                   "and comm with the runner's own compute and print a cost block (milliseconds) to paste "
                   "into the .sched file")
    p.add_argument("--profile-out", metavar="FILE", help="with --profile: write a copy of the .sched file "
                   "with the measured cost block in it")
    p.add_argument("--force", action="store_true", help="let --profile-out overwrite an existing .sched file")
    p.add_argument("--repeats", type=positive_int, default=20, help="with --profile: timed rounds at least "
                   "(each times every stage's F, B, I, W and F&B once; more, up to 4x, while a figure is "
                   "not stable)")
    p.add_argument("--profile-alone", action="store_true", help="with --profile on cpu: time the stages "
                   "alone, not beside processes computing as the host's other ranks would")
    p.add_argument("--calibrate", type=non_negative_int, default=16, metavar="STEPS", help="with --profile: "
                   "then run the plan with the profiled costs for STEPS traced steps on this host, take each "
                   "figure it runs from the steps after the first (isolated timings miss what ops cost inside "
                   "a run) and fit comm to its step; 0 skips the run (default 16)")
    p.add_argument("--bandwidth", type=positive_float, metavar="GB/S", help="with --profile: compute comm "
                   "from this bandwidth instead of measuring it between two processes")
    p.set_defaults(func=cmd_run)
