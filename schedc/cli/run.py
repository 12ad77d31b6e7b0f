"""`schedc run`: execute a plan on a torch model under torchrun, or profile the model's stages.

The launcher checks its arguments, compiles and verifies the plan, and checks the devices before
starting torchrun (so nothing starts that would fail on every rank); it passes torchrun's
multi-node options through and starts each rank as the installed `schedc-rank` entry point. It
reports a failed run in one line instead of torchrun's own traceback. The ranks print their own
errors (`schedc: error: rank R, instruction I (TOKEN): cause`), so when a rank fails, torchrun's
traceback (ChildFailedError) and its summary block repeat what was said with launcher internals;
they are dropped and replaced by one line naming the exit code. Any other traceback (a rank's
own, say from a model file that does not import) passes through untouched.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterable, TextIO

from ..backends.torch.options import RANK_OPTIONS, add_rank_options, non_negative_int, positive_float, positive_int
from ..compiler import compile_spec
from ..lang.spec import PipelineSpec
from ..lang.writer import replace_cost_block
from .common import UsageError, _load, _select, _write

LAUNCHER_FAILURE = "ChildFailedError"


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
    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    nproc = _processes_per_node(spec, args)
    if not Path(args.model).is_file():
        raise UsageError(f"cannot read the model file '{args.model}'")
    if args.profile_out and not args.profile:
        raise UsageError("--profile-out writes what --profile measures: add --profile")
    if args.profile:
        return _profile(spec, args)
    compile_spec(spec)  # once, here: a plan that does not verify starts nothing
    problem = device_problem(nproc, args.device, args.comm) or _overlap_problem(args)
    if problem:
        raise UsageError(problem)
    if spec.layers is not None:
        _check_layers(spec, args.model)
    for_ranks = argparse.Namespace(**{**vars(args), "trace": args.trace and str(Path(args.trace).resolve())})
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               *_rendezvous(args), *rank_program(), args.file, "--model", args.model, "--pipeline", spec.name,
               *rank_arguments(for_ranks)]
    print("schedc: " + " ".join(command[2:]), file=sys.stderr)
    return run_torchrun(command)


def _check_layers(spec: PipelineSpec, model_path: str) -> None:
    """The model file defines every layer the pipeline's layers block names (a located error
    here, once, instead of one per rank)."""
    from ..backends.torch.__main__ import load_model
    from ..backends.torch.layers import stage_builder

    stage_builder(load_model(model_path), spec)(spec.num_stages)


def _processes_per_node(spec: PipelineSpec, args) -> int:
    """Ranks per node: --nproc, else the pipeline's ranks over --nnodes; one process per rank in all."""
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise UsageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (where node 0 listens), the same on "
                         "every node")
    if args.node_rank >= args.nnodes:
        raise UsageError(f"--node-rank {args.node_rank}, but --nnodes {args.nnodes}: node ranks are "
                         f"0..{args.nnodes - 1}")
    nproc = args.nproc or spec.ranks // args.nnodes
    if nproc * args.nnodes != spec.ranks:
        raise UsageError(f"{args.nnodes} node(s) x {nproc} process(es), but the pipeline has ranks = "
                         f"{spec.ranks}: one process per rank")
    return nproc


def _rendezvous(args) -> list[str]:
    """torchrun's options for meeting the other ranks: this host alone on a free port, or the
    multi-node options given (passed through)."""
    if args.nnodes == 1 and not args.rdzv_endpoint:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return ["--master-addr=127.0.0.1", f"--master-port={port}"]
    return [f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}", f"--rdzv-backend={args.rdzv_backend}",
            f"--rdzv-endpoint={args.rdzv_endpoint}"]


def rank_program() -> list[str]:
    """How torchrun starts a rank: the installed `schedc-rank` entry point (`--no-python`), so a
    checkout's schedc/ in the working directory cannot shadow the installed package (`python -m`
    puts the working directory first on the path); `-m schedc.backends.torch` when schedc is not
    installed (run from a source tree)."""
    folders = [Path(sys.argv[0]).resolve().parent, Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for folder in folders:
        script = folder / "schedc-rank"
        if script.is_file():
            return ["--no-python", str(script)]
    return ["-m", "schedc.backends.torch"]


def _profile(spec: PipelineSpec, args) -> int:
    """Time the model's stages with the runner's own compute; print the figures, what to doubt,
    and the cost block; with --profile-out, write it into a copy of the file."""
    import torch

    from ..backends.torch.__main__ import load_model
    from ..backends.torch.commprobe import comm_from_bandwidth
    from ..backends.torch.companions import companions
    from ..backends.torch.calibrate import calibrated_rows, format_calibration, run_sends
    from ..backends.torch.costblock import charge_sends, cost_rows, cross_rank_sends, format_cost_block, sent_bytes
    from ..backends.torch.profiler import (format_profile_table, profile_stages, recommended_way,
                                           sanity_warnings)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(0)
    elif _overlap_problem(args):
        raise UsageError(_overlap_problem(args))
    threads = torch.get_num_threads()
    if device.type == "cpu" and spec.ranks > 1:  # as torchrun gives each of several ranks
        threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        torch.set_num_threads(threads)
    model = load_model(args.model)
    if hasattr(model, "build_layers"):  # measured per layer: a description `schedc partition` reads
        from ..backends.torch.layers import profile_layers

        print(f"schedc: per-layer costs of {args.model} ({args.dtype}, this machine; ms and MiB)",
              file=sys.stderr)
        print(json.dumps(profile_layers(model, getattr(torch, args.dtype)), indent=1))
        return 0
    others = spec.ranks // args.nnodes - 1 if device.type == "cpu" and not args.profile_alone else 0
    with companions(args.model, spec.num_stages, args.dtype, others):
        profiles = profile_stages(model, spec.num_stages, getattr(torch, args.dtype), device, args.overlap,
                                  repeats=args.repeats)
    sizes = sent_bytes(profiles)
    if args.bandwidth:
        comm, how = comm_from_bandwidth(sizes, args.bandwidth), f"computed from --bandwidth {args.bandwidth:g} GB/s"
        send = [0.0] * len(sizes)
    else:
        transfers, how = _measured_comm(sizes, args, device)
        comm, send = transfers.comm, transfers.send
    where = f"{device}" + (f", {threads} thread(s), beside {others} process(es) computing as this host's "
                           "other ranks do" if device.type == "cpu" else "")
    print(f"# per-stage costs of {args.model} ({spec.num_stages} stages, {args.dtype}, {where}), all stages "
          f"timed round-robin; each figure the mean of the middle half of its samples after a warm-up, "
          f"±spread (interquartile range / figure); comm {how}; send: what posting that transfer costs "
          f"the sending rank ({'none measured: from a bandwidth' if args.bandwidth else 'measured with comm'})")
    print(format_profile_table(profiles, comm, send))
    for warning in sanity_warnings(profiles):
        print(f"# warning: {warning}")
        print(f"schedc: warning: {warning}", file=sys.stderr)
    way = recommended_way(profiles)
    if way is not None and len({w for p in profiles for w in p.pair_ways}) > 1:
        print(f"# overlapped pairs without a hook: {way} is faster here; run with --overlap {way}")
    sends = cross_rank_sends(spec)
    rows = cost_rows(profiles, comm, send, sends)
    block = format_cost_block(rows)
    ran = _calibration_run(spec, args, block) if args.calibrate else None
    if ran is not None:
        run, plan = ran
        plain = cost_rows(profiles, comm)
        calibrated = calibrated_rows(plain, run)
        print(format_calibration(plain, calibrated, run.steps))
        rows = charge_sends(calibrated, *run_sends(run, send), sends)
        block = format_cost_block(rows, f"calibrated by a {args.calibrate}-step run of the plan")
        if spec.schedule in COST_CHOSEN and _with_block(spec, args, block, Path(args.file).name).plan != plan:
            print(f"# note: with the calibrated costs, schedule = {spec.schedule} chooses another plan than the one "
                  "the calibration ran; the figures are per op and carry over, but --profile on the written file "
                  "calibrates with that plan")
    charged = [f"stage {r['stage']} {k} +{r['send ' + k]:.3g}" for r in rows for k in ("F", "B") if r["send " + k]]
    if charged:
        print(f"# the block charges each op that sends to another rank ({spec.placement} placement) its send: "
              f"{', '.join(charged)} ms (F&B gets both of its halves'); comm there is what is left after the post")
    print(block)
    if args.profile_out:
        text = Path(args.file).read_text(encoding="utf-8")
        _write(replace_cost_block(text, spec.source.ast, block), args.profile_out,
               [] if args.force else [args.file], force=args.force)
    return 0


COST_CHOSEN = ("search", "optimal", "auto")  # schedules whose plan depends on the costs


def _with_block(spec: PipelineSpec, args, block: str, name: str, folder: str | None = None):
    """The compiled pipeline of the file with `block` as its cost block, written as `name` in
    `folder` (a temporary one when None; compiling checks it as a run would)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="schedc-profile-") as temporary:
        path = Path(folder or temporary) / name
        path.write_text(replace_cost_block(Path(args.file).read_text(encoding="utf-8"), spec.source.ast, block),
                        encoding="utf-8")
        _source, specs = _load(str(path))
        return compile_spec(_select(specs, spec.name, single=True)[0])


def _calibration_run(spec: PipelineSpec, args, block: str):
    """Run the plan with the profiled `block` for `--calibrate` steps under torchrun, traced; the
    run's instruction durations (`calibrate.RunDurations`) and the plan it ran, or None, with the
    reason printed, when no run can start on this host."""
    import tempfile

    from ..backends.torch.calibrate import run_durations

    why = ("the ranks span several nodes (--nnodes); calibrate on one node with all the ranks"
           if args.nnodes > 1 else device_problem(spec.ranks, args.device, args.comm))
    if why:
        print(f"# not calibrated by a run: {why}")
        print(f"schedc: warning: not calibrated by a run: {why}", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix="schedc-calibrate-") as folder:
        profiled, trace = Path(folder) / Path(args.file).name, Path(folder) / "trace.json"
        plan = _with_block(spec, args, block, profiled.name, folder).plan
        for_ranks = argparse.Namespace(**{**vars(args), "steps": args.calibrate, "trace": str(trace),
                                          "check": False})
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={spec.ranks}",
                   *_rendezvous(args), *rank_program(), str(profiled), "--model", args.model, "--pipeline",
                   spec.name, *rank_arguments(for_ranks)]
        print(f"schedc: calibrating: {args.calibrate} traced steps of the plan on {spec.ranks} ranks, with the "
              "profiled costs (--calibrate 0 skips this)", file=sys.stderr)
        code = run_torchrun(command, stdout_to_stderr=True)
        if code:
            raise UsageError(f"the calibration run failed (torchrun exit code {code}; the ranks said why above); "
                             "fix that, or skip the run with --calibrate 0")
        return run_durations(json.loads(trace.read_text())), plan


def _measured_comm(sizes: list[int], args, device):
    """Each transfer's time and the sender's cost of posting it (`commprobe.Transfers`), measured
    between two processes, and how they were measured."""
    import torch

    from ..backends.torch.commprobe import measure_comm

    backend = args.comm or ("nccl" if device.type == "cuda" else "gloo")
    where = device.type
    if backend == "nccl" and torch.cuda.device_count() < 2:
        backend, where = "gloo", "cpu"  # NCCL needs a GPU per process
    try:
        transfers = measure_comm(sizes, backend, where)
    except RuntimeError as error:
        raise UsageError(f"{error}; give --bandwidth GB/S to compute comm instead") from None
    return transfers, f"measured between two processes over {backend}" + (" (host memory)" if where != device.type else "")


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


def _overlap_problem(args) -> str | None:
    import torch

    on_cpu = args.device == "cpu" or not torch.cuda.is_available()
    if args.overlap == "streams" and on_cpu:
        return "--overlap streams needs CUDA; on cpu an overlapped pair runs sequentially"
    return None


def device_problem(nproc: int, device: str | None, comm: str | None) -> str | None:
    """Why `nproc` ranks cannot run on `device` with `comm` here, or None (the message says what
    to change)."""
    if device == "cpu":
        return "NCCL runs on GPUs only; use --device cuda, or leave out --comm on cpu" if comm == "nccl" else None
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            return "--device cuda, but this torch sees no GPU; use --device cpu"
        if comm == "nccl":
            return "--comm nccl needs GPUs, and this torch sees none; use gloo (the default on cpu)"
        return None
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


def run_torchrun(command: list[str], stdout_to_stderr: bool = False) -> int:
    """Run `command` (torchrun), its stderr through `filter_launcher_traceback`; the exit code.
    With `stdout_to_stderr` the ranks' standard output joins that stream (so ours stays what the
    command prints, as when --profile's calibration run reports)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE if stdout_to_stderr else None,
                               stderr=subprocess.STDOUT if stdout_to_stderr else subprocess.PIPE, text=True,
                               bufsize=1)
    stream = process.stdout if stdout_to_stderr else process.stderr
    assert stream is not None
    dropped = filter_launcher_traceback(stream, sys.stderr)
    for _rest in stream:  # the launcher's summary block
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
    p.add_argument("--calibrate", type=non_negative_int, default=6, metavar="STEPS", help="with --profile: "
                   "then run the plan with the profiled costs for STEPS traced steps on this host and take each "
                   "figure it runs from the steps after the first (isolated timings miss what ops cost inside "
                   "a run); 0 skips the run (default 6)")
    p.add_argument("--bandwidth", type=positive_float, metavar="GB/S", help="with --profile: compute comm "
                   "from this bandwidth instead of measuring it between two processes")
    p.set_defaults(func=cmd_run)
