"""The `schedc` command line: the parser and the dispatch. Each group of commands lives in a module of
its own (plans, draw, interop, run, balance, partition, overlap) that adds its subcommands through `register(sub)`.

One exit-code rule for every command:

    0  fine
    1  a problem in the input: a located error in a file, a failed check
    2  a usage or I/O error: a bad option, a file that cannot be read or written, a missing tool

Every message starts `schedc: error:` (a located error starts with its `file:line:col: error:`,
the line and a caret). Bad input never produces a traceback, and neither does Ctrl-C: it prints
`schedc: interrupted` and exits 130, as a shell does for SIGINT.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import SchedError
from . import balance, draw, interop, overlap, partition, plans, run
from .common import UsageError, print_error

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class Parser(argparse.ArgumentParser):
    """argparse's parser with the one error prefix (`schedc: error:`) and exit status 2; the
    subcommands' parsers are of this class too (argparse makes them with the parent's class)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"schedc: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="schedc", description="A compiler for pipeline-parallel training schedules "
                    "(.sched files). Exit status: 0 fine, 1 a problem in the input (a located error, "
                    "a failed check), 2 a usage or I/O error, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"schedc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in (plans, draw, interop, run, balance, partition, overlap):
        commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except KeyboardInterrupt:
        fresh_line = "\n" if sys.stderr.isatty() else ""  # after the terminal's ^C
        print(f"{fresh_line}schedc: interrupted", file=sys.stderr)
        return INTERRUPTED


def _dispatch(args) -> int:
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
