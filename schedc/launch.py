"""`schedc run`'s launcher: check the devices before starting torchrun, and report a failed run
in one line instead of torchrun's own traceback.

The ranks print their own errors (`schedc: error: rank R, instruction I (TOKEN): cause`), so when
a rank fails, torchrun's traceback (ChildFailedError) and its summary block repeat what was said
with launcher internals; they are dropped and replaced by one line naming the exit code. Any other
traceback (a rank's own, say from a model file that does not import) passes through untouched.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Iterable, TextIO

LAUNCHER_FAILURE = "ChildFailedError"

# The options of one rank (`python -m schedc.backends.torch`), which `schedc run` takes too and
# hands on to every rank: declared once, here (this module does not import torch).
RANK_OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--steps", dict(type=int, default=1, help="training steps to run")),
    ("--check", dict(action="store_true", help="compare losses and every gradient with a single-process "
                     "run; prints the largest relative error and PASS/FAIL")),
    ("--dtype", dict(choices=("float64", "float32"), default="float64")),
    ("--device", dict(choices=("cpu", "cuda"), help="default: cuda when available (NCCL, one GPU per rank: "
                      "LOCAL_RANK), else cpu (gloo)")),
    ("--comm", dict(choices=("nccl", "gloo"), help="default: nccl on cuda (one GPU per rank), gloo on cpu; "
                    "gloo with --device cuda stages transfers through host memory, so ranks can share a GPU")),
    ("--timeout", dict(type=float, default=60, help="seconds before a stuck transfer fails")),
    ("--trace", dict(help="write a Chrome trace of the last step as it ran, and compare measured and "
                     "simulated step time and per-rank idle (ranks on one host)")),
    ("--keep-sent-outputs", dict(action="store_true", help="keep each sent stage output's storage until "
                                 "its backward (by default it is given back once sent; keep it only when a "
                                 "stage keeps and reads the tensor it returns)")),
)


def add_rank_options(parser: argparse.ArgumentParser) -> None:
    for flag, options in RANK_OPTIONS:
        parser.add_argument(flag, **options)


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
