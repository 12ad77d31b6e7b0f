"""Progress of a long search, for whoever asked to hear it, and the Ctrl-C contract.

The search stays a pure function of its spec: it prints nothing. A caller that wants progress
(the command line, on a terminal) installs a reporter around the compile:

    with reporting(TerminalReporter(sys.stderr, quiet=args.quiet)):
        compiled = compile_spec(spec)

and the heuristic search and CP-SAT call it, about once a second once they have run for
`QUIET_FOR` seconds, with a `Progress` (best plan so far, the lower bound, seconds elapsed). Without
a reporter (a library call, `schedc run`'s ranks) nothing is reported.

Ctrl-C: `search` and `optimal` catch the KeyboardInterrupt, stop, and return the best plan found so
far with `SearchResult.interrupted` set (not proven; its gap to the bound is the caller's to
print); they re-raise it only when no plan exists yet.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, TextIO

QUIET_FOR = 2.0  # seconds of work before the first report
EVERY = 1.0  # seconds between reports


@dataclass(frozen=True, slots=True)
class Progress:
    """One report: who is working, the best makespan so far (None: no plan yet), the lower bound,
    and the seconds since the search began."""

    stage: str  # "search" (the heuristic) or "CP-SAT"
    best: float | None
    bound: float
    elapsed: float


Reporter = Callable[[Progress], None]
_REPORTER: ContextVar[Reporter | None] = ContextVar("schedc_search_reporter", default=None)


@contextmanager
def reporting(reporter: Reporter | None):
    """Within the block, searches report their progress to `reporter` (None: to nobody)."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)
        if reporter is not None and hasattr(reporter, "close"):
            reporter.close()


class Ticker:
    """What a search calls in its loop: cheap when nothing is due (a clock read every `stride`
    calls), a report to the installed reporter once one is."""

    def __init__(self, stage: str, bound: float, began: float | None = None, stride: int = 1):
        self.stage, self.bound, self.stride = stage, bound, stride
        self.began = time.perf_counter() if began is None else began
        self.reporter = _REPORTER.get()
        self.next_at = self.began + QUIET_FOR
        self.calls = 0

    def tick(self, best: float | None, force: bool = False) -> None:
        """Report `best` when a report is due (every call when `force`, past the quiet time)."""
        if self.reporter is None:
            return
        self.calls += 1
        if not force and self.calls % self.stride:
            return
        now = time.perf_counter()
        if now < self.next_at:
            return
        self.next_at = now + EVERY
        self.reporter(Progress(self.stage, None if best is None or best == float("inf") else best,
                               self.bound, now - self.began))


def format_progress(p: Progress) -> str:
    """One line: `search: best 103.4, bound 100.2 (gap 3.19%), 4.1 s`."""
    if p.best is None:
        return f"{p.stage}: no plan yet, bound {p.bound:g}, {p.elapsed:.1f} s"
    gap = (p.best - p.bound) / p.bound if p.bound > 0 else 0.0
    return f"{p.stage}: best {p.best:g}, bound {p.bound:g} (gap {gap:.2%}), {p.elapsed:.1f} s (Ctrl-C stops)"


class TerminalReporter:
    """A reporter that rewrites one status line on `stream`; a no-op when `stream` is not a
    terminal or `quiet` (so pipes and logs stay clean). `close` clears the line."""

    def __init__(self, stream: TextIO, quiet: bool = False):
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.active = not quiet and bool(isatty and isatty())
        self.width = 0

    def __call__(self, progress: Progress) -> None:
        if not self.active:
            return
        line = format_progress(progress)
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.active and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0
