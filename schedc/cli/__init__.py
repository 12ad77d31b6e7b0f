"""The command line (`schedc COMMAND`): the top floor.

main.py builds the parser and dispatches; each other module is one group of commands and adds its
subcommands with `register(sub)`: core (compile, check, simulate, compare), draw (viz, trace, dag),
interop (export, import, audit-torch), run (run, run --profile, and the torchrun launcher),
balance (expert placement);
common holds what they share (loading files, choosing pipelines, writing output, printing errors).

May import everything in schedc. Nothing outside cli/ imports cli/ (the backends included: the
per-rank options they share with `schedc run` live in schedc.backends.torch.options). torch is
imported only inside the functions that need it.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
