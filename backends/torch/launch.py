"""How `schedc run` starts the ranks: the torchrun command (`torchrun_command`: this host alone on
a free port, or torchrun's multi-node options passed through; each rank the installed `schedc-rank`
entry point), whether the devices can take the ranks (`device_problem`, `overlap_problem`: checked
before torchrun starts, so nothing starts that would fail on every rank), and the run itself
(`run_torchrun`), which reports a failed run in one line instead of torchrun's own traceback.

The ranks print their own errors (`schedc: error: rank R, instruction I (TOKEN): cause`), so when a
rank fails, torchrun's traceback (ChildFailedError) and its summary block repeat what was said with
launcher internals; they are dropped and replaced by one line naming the exit code. Any other
traceback (a rank's own, say from a model file that does not import) passes through untouched.

Used by the command line and by `--profile`'s calibration run. Like options.py, this module does not
import torch (only inside the functions that need it), so the command line can import it without.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterable, TextIO

from .options import rank_arguments

LAUNCHER_FAILURE = "ChildFailedError"


def torchrun_command(nproc: int, file: str, pipeline: str, args, for_ranks) -> list[str]:
    """torchrun starting `nproc` ranks on this node, each running `pipeline` of `file` on the
    model file `args.model` with `for_ranks`' values of the rank options (`args` also holds the
    rendezvous options)."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", *rendezvous(args),
            *rank_program(), file, "--model", args.model, "--pipeline", pipeline, *rank_arguments(for_ranks)]


def rendezvous(args) -> list[str]:
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


def overlap_problem(args) -> str | None:
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


INTERRUPTED = 130  # run_torchrun's code when Ctrl-C stopped the run (it has said so)


def run_torchrun(command: list[str], stdout_to_stderr: bool = False) -> int:
    """Run `command` (torchrun), its stderr through `filter_launcher_traceback`; the exit code.
    With `stdout_to_stderr` the ranks' standard output joins that stream (so ours stays what the
    command prints, as when --profile's calibration run reports)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE if stdout_to_stderr else None,
                               stderr=subprocess.STDOUT if stdout_to_stderr else subprocess.PIPE, text=True,
                               bufsize=1)
    stream = process.stdout if stdout_to_stderr else process.stderr
    assert stream is not None
    try:
        dropped = filter_launcher_traceback(stream, sys.stderr)
        for _rest in stream:  # the launcher's summary block
            pass
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C: torchrun (same process group) stops the ranks; their
        _stop(process)        # tracebacks stay in the pipe, unread
        print("\nschedc: interrupted: every rank was stopped", file=sys.stderr)
        return INTERRUPTED
    if code and dropped:
        print(f"schedc: error: the run failed (torchrun exit code {code}); the failing ranks said why "
              "above", file=sys.stderr)
    return code


def _stop(process: subprocess.Popen) -> None:
    """Let torchrun stop its ranks (it had the same SIGINT), or make it, then be sure it ended."""
    import signal

    for sig, wait in ((None, 20), (signal.SIGINT, 20), (signal.SIGKILL, 5)):
        if sig is not None:
            process.send_signal(sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            continue
