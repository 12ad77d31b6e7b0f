"""The options of one rank (`python -m schedc.backends.torch`), which `schedc run` takes too and
hands on to every rank: declared once, here (`add_rank_options`), and turned back into a rank's
arguments (`rank_arguments`). This module does not import torch, so the command line can build its
parser without it.
"""

from __future__ import annotations

import argparse


def _whole_number(text: str, least: int) -> int:
    """`text` as a whole number >= `least`, or argparse's usage error saying so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got '{text}'") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse reports anything else as a usage error)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _whole_number(text, 0)


def _finite_number(text: str, zero_allowed: bool) -> float:
    bound = ">= 0" if zero_allowed else "> 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got '{text}'") from None
    if not (0 <= value if zero_allowed else 0 < value) or value == float("inf") or value != value:
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _finite_number(text, zero_allowed=False)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    return _finite_number(text, zero_allowed=True)


RANK_OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--steps", dict(type=positive_int, default=1, help="training steps to run (forward, backward, "
                     "optimizer step)")),
    ("--lr", dict(type=positive_float, default=0.01, help="the learning rate of the SGD step when the model "
                  "file defines no make_optimizer(parameters)")),
    ("--check", dict(action="store_true", help="compare losses, every gradient and every parameter after "
                     "the last step with a single-process run; prints the largest relative error and PASS/FAIL "
                     "(a NaN or inf on either side fails, saying where)")),
    ("--dtype", dict(choices=("float64", "float32"), default="float64")),
    ("--device", dict(choices=("cpu", "cuda"), help="default: cuda when available (NCCL, one GPU per rank: "
                      "LOCAL_RANK), else cpu (gloo)")),
    ("--comm", dict(choices=("nccl", "gloo"), help="default: nccl on cuda (one GPU per rank), gloo on cpu; "
                    "gloo with --device cuda stages transfers through host memory, so ranks can share a GPU")),
    ("--timeout", dict(type=positive_float, default=60, help="seconds before a stuck transfer fails")),
    ("--trace", dict(help="write a Chrome trace of every step as it ran, and compare measured (the median "
                     "of the steps after the first) and simulated step time and per-rank idle (ranks on one "
                     "host)")),
    ("--overlap", dict(choices=("chunks", "streams", "sequential"), help="how an overlapped F&B pair runs: "
                       "chunks, the two microbatches' chunk parts interleaved so one's all-to-all is in flight "
                       "while the other computes (the default when the model declares chunk parts, e.g. "
                       "examples/models/moe.py); streams, the forward on a second CUDA stream beside the "
                       "backward (default on cuda otherwise); sequential, the forward then the backward "
                       "(default on cpu otherwise); `--profile` times streams and sequential and says which pays")),
    ("--ep", dict(type=positive_int, default=1, help="expert parallelism: each pipeline rank is held by EP "
                  "processes (ranks x EP in all), each MoE layer's experts sharded over them, dispatch and "
                  "combine all-to-alls between them; EP must divide every MoE layer's experts")),
    ("--memory", dict(action="store_true", help="count the activations autograd saves (and the inputs a "
                      "recomputing stage keeps) and print each rank's peak beside the simulator's, in the file's "
                      "activation units (from the second step on; the first measures each stage's unit)")),
    ("--compare-overlap", dict(action="store_true", help="after the steps, run them again with overlapped "
                               "pairs sequential and print both step times and exposed communication")),
    ("--rebalance-every", dict(type=positive_int, metavar="N", help="live expert balancing (with --ep): "
                               "after every N steps, plan a placement on the tokens each expert received and move "
                               "experts and their optimizer state between EP members (migration-aware)")),
    ("--window", dict(type=positive_int, metavar="W", help="with --rebalance-every: plan on the token counts of "
                      "the last W steps (default N)")),
    ("--redundant", dict(type=non_negative_int, metavar="R", help="with --rebalance-every: R extra expert slots "
                         "per MoE layer (a multiple of --ep) for replicas of busy experts (default 0)")),
    ("--max-moves", dict(type=non_negative_int, metavar="K", help="with --rebalance-every: change at most K slots "
                         "per layer per rebalance (default: as few as the best balance allows)")),
    ("--balance-tolerance", dict(type=non_negative_float, metavar="T", help="with --rebalance-every: move "
                                 "only as many experts as bring each layer's busiest member within 1 + T of a "
                                 "lower bound on any plan (else of the best plan's) (default 0.02; 0: the best "
                                 "plan, relabelled to keep what it can)")),
    ("--load-log", dict(metavar="DIR", help="with --rebalance-every: write each rebalance's loads and placements "
                        "(rank{R}-step{S}.json, which `schedc balance FILE --previous FILE` replays) and the "
                        "per-step imbalance and step time (rank{R}-steps.jsonl) into this new folder")),
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
