"""`schedc run`: execute a plan on a torch model under torchrun, or profile the model's stages.

The launcher checks the devices before starting torchrun, and reports a failed run in one line
instead of torchrun's own traceback. The ranks print their own errors (`schedc: error: rank R,
instruction I (TOKEN): cause`), so when a rank fails, torchrun's traceback (ChildFailedError) and
its summary block repeat what was said with launcher internals; they are dropped and replaced by one
line naming the exit code. Any other traceback (a rank's own, say from a model file that does not
import) passes through untouched.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterable, TextIO

from ..backends.torch.options import RANK_OPTIONS, add_rank_options
from ..lang.spec import PipelineSpec
from .common import UsageError, _load, _select

LAUNCHER_FAILURE = "ChildFailedError"


def cmd_run(args) -> int:
    """Start `torchrun` with one process per rank, each running `schedc.backends.torch`."""
    import socket

    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    nproc = args.nproc or spec.ranks
    if nproc != spec.ranks:
        raise UsageError(f"--nproc {nproc}, but the pipeline has ranks = {spec.ranks}: one process per rank")
    if not Path(args.model).is_file():
        raise UsageError(f"cannot read the model file '{args.model}'")
    problem = None if args.profile else device_problem(nproc, args.device, args.comm)
    if problem:
        raise UsageError(problem)
    if spec.layers is not None:
        _check_layers(spec, args.model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for_ranks = argparse.Namespace(**{**vars(args), "trace": args.trace and str(Path(args.trace).resolve())})
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "schedc.backends.torch",
               args.file, "--model", args.model, "--pipeline", spec.name, *rank_arguments(for_ranks)]
    if args.profile:
        return _profile(spec, args)
    print("schedc: " + " ".join(command[2:]), file=sys.stderr)
    return run_torchrun(command)


def _check_layers(spec: PipelineSpec, model_path: str) -> None:
    """The model file defines every layer the pipeline's layers block names (a located error
    here, once, instead of one per rank)."""
    from ..backends.torch.__main__ import load_model
    from ..backends.torch.layers import stage_builder

    stage_builder(load_model(model_path), spec)(spec.num_stages)


def _profile(spec: PipelineSpec, args) -> int:
    import torch

    from ..backends.torch.__main__ import load_model
    from ..backends.torch.measure import format_cost_block, profile_stages

    model = load_model(args.model)
    if hasattr(model, "build_layers"):  # measured per layer: a description `schedc partition` reads
        from ..backends.torch.layers import profile_layers

        print(f"schedc: per-layer costs of {args.model} ({args.dtype}, this machine; ms and MiB)",
              file=sys.stderr)
        print(json.dumps(profile_layers(model, getattr(torch, args.dtype)), indent=1))
        return 0
    rows = profile_stages(model, spec.num_stages, getattr(torch, args.dtype))
    print(f"# per-stage costs of {args.model} ({spec.num_stages} stages, {args.dtype}, this machine)")
    print(format_cost_block(rows))
    return 0


def rank_arguments(args: argparse.Namespace) -> list[str]:
    """`args`' values of RANK_OPTIONS as command-line arguments for a rank."""
    argv: list[str] = []
    for flag, options in RANK_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if options.get("action") == "store_true":
            argv += [flag] if value else []
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def device_problem(nproc: int, device: str | None, comm: str | None) -> str | None:
    """Why `nproc` ranks cannot run on `device` with `comm` here, or None (the message says what
    to change)."""
    if device == "cpu":
        return "NCCL runs on GPUs only; use --device cuda, or leave out --comm on cpu" if comm == "nccl" else None
    import torch

    if not torch.cuda.is_available():
        return "--device cuda, but this torch sees no GPU; use --device cpu" if device == "cuda" else None
    gpus = torch.cuda.device_count()
    if (comm or "nccl") == "nccl" and nproc > gpus:
        return (f"NCCL needs one GPU per rank: {nproc} ranks, {gpus} GPU(s); add --comm gloo to share "
                "GPUs (transfers staged through host memory), or --device cpu")
    return None


def filter_launcher_traceback(lines: Iterable[str], out: TextIO) -> bool:
    """Copy `lines` to `out`, leaving out torchrun's ChildFailedError traceback and everything
    after it (its summary). Returns whether it left that out."""
    held: list[str] = []  # a traceback being read, until its exception line says whose it is
    for line in lines:
        if held:
            held.append(line)
            if line[:1] not in (" ", "\t", "") and not line.startswith("Traceback"):
                if LAUNCHER_FAILURE in line:
                    return True
                out.writelines(held)
                held = []
            continue
        if line.startswith("Traceback (most recent call last):"):
            held = [line]
            continue
        out.write(line)
        out.flush()
    out.writelines(held)
    return False


def run_torchrun(command: list[str]) -> int:
    """Run `command` (torchrun), its stderr through `filter_launcher_traceback`; the exit code."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stderr is not None
    dropped = filter_launcher_traceback(process.stderr, sys.stderr)
    for _rest in process.stderr:  # the launcher's summary block
        pass
    code = process.wait()
    if code and dropped:
        print(f"schedc: error: the run failed (torchrun exit code {code}); the failing ranks said why "
              "above", file=sys.stderr)
    return code


def register(sub) -> None:
    """Add run to the `schedc` parser's subcommands."""
    p = sub.add_parser("run", help="execute the plan on a torch model under torchrun (gloo on CPU)")
    p.add_argument("file")
    p.add_argument("--model", required=True, help="a model file defining build_stages, loss_fn and "
                   "make_batch (see examples/models/mlp.py)")
    p.add_argument("--pipeline")
    p.add_argument("--nproc", type=int, help="processes (default: the pipeline's ranks)")
    add_rank_options(p)
    p.add_argument("--profile", action="store_true", help="measure the model's per-stage F, B, W, F&B "
                   "and print a cost block to paste into the .sched file (runs nothing distributed)")
    p.set_defaults(func=cmd_run)
