"""The options of one rank (`python -m schedc.backends.torch`), which `schedc run` takes too and
hands on to every rank: declared once, here. This module does not import torch, so the command line
can build its parser without it.
"""

from __future__ import annotations

import argparse

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
