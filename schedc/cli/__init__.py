"""The command line (`schedc COMMAND`): the top floor.

main.py builds the parser and dispatches; each other module is one group of commands and adds its
subcommands with `register(sub)`: plans (compile, check, simulate, compare), draw (viz, trace, dag),
interop (export, import, audit-torch), run (run and run --profile; the launcher is the backend's launch.py),
balance (expert placement), partition (layers onto stages), overlap (a chunk's derived costs);
common holds what they share (loading files, choosing pipelines, writing output, printing errors).

Nothing outside cli/ imports cli/ (the backends included: the
per-rank options they share with `schedc run` live in schedc.backends.torch.options). torch is
imported only inside the functions that need it.

May import: everything
Libraries at module level: none
Libraries inside functions: torch, numpy
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
