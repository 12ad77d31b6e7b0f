"""The `schedc` command line: the parser and the dispatch. Each group of commands lives in a module of
its own (plans, draw, interop, run, balance, partition, overlap) that adds its subcommands through `register(sub)`.

Bad input never produces a traceback: every `SchedError` is printed with its place and a caret,
and the exit status is 1 (2 for a usage error, as argparse does).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import SchedError
from . import balance, draw, interop, overlap, partition, plans, run
from .common import UsageError, print_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schedc", description="A compiler for pipeline-parallel "
                                     "training schedules (.sched files).")
    parser.add_argument("--version", action="version", version=f"schedc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in (plans, draw, interop, run, balance, partition, overlap):
        commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SchedError as error:
        print_error(error, getattr(args, "file", None))
        return 1
    except UsageError as error:
        print(f"schedc: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
