"""Helpers shared by the command-line modules: loading files, choosing pipelines, writing output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..compiler import compile_spec, with_family
from ..errors import Diagnostic, SchedError, SourceFile, Span, decode_source, render_diagnostic
from ..simulate import simulate
from ..lang.spec import FAMILIES, SEARCHES, PipelineSpec, check_program
from ..lang.syntax import parse_program
from ..lang.writer import write_whole


class UsageError(Exception):
    """A problem with the command line or the files it names (not with .sched text)."""


def read_input(path: str) -> str:
    """The text of an input file. An unreadable file is a `UsageError` naming it and the cause;
    bytes that are not UTF-8 are a `SchedError` at their line and column."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read '{path}': {exc.strerror or exc}") from None
    return decode_source(data, path)


def load_specs(path: str, resolve: bool = True) -> tuple[SourceFile, list[PipelineSpec]]:
    """The file's checked pipelines; with `resolve`, `stages = auto` ones get their chosen split."""
    text = read_input(path)
    source = SourceFile(path, text)
    try:
        specs = check_program(parse_program(text, path))
        if not specs:
            raise SchedError([Diagnostic("no pipeline in this file; write `pipeline NAME { ranks = 4 "
                                         "microbatches = 8 schedule = 1f1b }`", Span(path, 1, 1, 1, 2))])
        if resolve:
            specs = [resolve_stages(s) for s in specs]
    except SchedError as error:
        error.source = source
        raise
    return source, specs


def select_pipelines(specs: list[PipelineSpec], name: str | None, single: bool) -> list[PipelineSpec]:
    if name is not None:
        chosen = [s for s in specs if s.name == name]
        if not chosen:
            raise UsageError(f"no pipeline named '{name}' (the file has: "
                             f"{', '.join(s.name for s in specs)})")
        return chosen
    if single and len(specs) > 1:
        raise UsageError(f"the file has {len(specs)} pipelines ({', '.join(s.name for s in specs)}); "
                         "pick one with --pipeline NAME")
    return specs


def write_output(data: str | bytes, output: str | None, inputs: list[str], force: bool = False) -> None:
    """Write to `output` (the user named it) or standard output; never over an input file (by
    identity: a hard link or another spelling of the input is the input), never half-written."""
    if output is None or output == "-":
        if isinstance(data, bytes):
            raise UsageError("binary output needs a file: add -o NAME")
        sys.stdout.write(data)
        return
    out = Path(output)
    check_folder(output)
    if any(_same_file(out, Path(i)) for i in inputs):
        raise UsageError(f"refusing to overwrite the input file '{output}'; choose another -o")
    if out.suffix == ".sched" and out.exists() and not force:
        raise UsageError(f"refusing to overwrite '{output}': it is a .sched file, perhaps "
                         "hand-written; choose another -o, or add --force")
    write_atomically(out, data.encode("utf-8") if isinstance(data, str) else data)
    print(f"wrote {output}", file=sys.stderr)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return a.resolve() == b.resolve()


def write_atomically(path: Path, data: bytes) -> None:
    """`write_whole` (a failure leaves any existing file as it was), an OSError turned into one
    `UsageError` line naming the path and the cause."""
    try:
        write_whole(path, data)
    except OSError as exc:
        raise UsageError(f"cannot write '{path}': {exc.strerror or exc}") from None


def check_folder(output: str | None) -> None:
    """Refuse, before any work, an output that cannot be written where it is named: a directory,
    or a file in a folder that does not exist (schedc creates no folders). None and `-` are
    standard output."""
    if output is None or output == "-":
        return
    out = Path(output)
    if out.is_dir():
        raise UsageError(f"cannot write '{output}': it is a directory; name a file inside it")
    folder = out.parent
    if not folder.exists():
        raise UsageError(f"cannot write '{output}': the folder '{folder}' does not exist (schedc "
                         "creates no folders; make it first, or choose another path)")
    if not folder.is_dir():
        raise UsageError(f"cannot write '{output}': '{folder}' is a file, not a folder")


def output_format(output: str | None, given: str | None, allowed: tuple[str, ...], what: str) -> str:
    """The format from --format, else from -o's extension; refuses others with the list, and an
    output whose folder does not exist (`check_folder`), before any work is done."""
    fmt = given or (Path(output).suffix.lstrip(".").lower() if output else allowed[0])
    if fmt not in allowed:
        raise UsageError(f"{what} cannot be written as '{fmt}'; choose one of: "
                         f"{', '.join('.' + a for a in allowed)}")
    check_folder(output)
    return fmt


def parse_families(text: str, flag: str = "--schedules") -> list[str]:
    """`1f1b,zbv` -> ["1f1b", "zbv"]; unknown names and a list naming none are usage errors."""
    families = [f.strip() for f in text.split(",") if f.strip()]
    known = FAMILIES + SEARCHES
    if not families:
        raise UsageError(f"{flag} '{text}' names no schedule; give a comma-separated list such as "
                         f"1f1b,zb-h1,zbv (known: {', '.join(known)})")
    unknown = [f for f in families if f not in known]
    if unknown:
        raise UsageError(f"unknown schedule {', '.join(unknown)} (known: {', '.join(known)})")
    return families


def to_png(svg: str, scale: float | None = None) -> bytes:
    """The PNG of `svg` at `--scale` (None: the command has no such option, scale 1); a missing
    cairosvg (or cairo) and a picture over the size limit are usage errors (exit 2) that say what
    to install or which scale fits."""
    from ..viz.png import MAX_SIDE, PictureTooLarge, svg_size, svg_to_png

    width, height = svg_size(svg)
    if scale is not None and max(width, height) * scale > MAX_SIDE:
        fits = int(MAX_SIDE / max(width, height) * 10) / 10
        raise UsageError(f"--scale {scale:g} would make a {round(width * scale):,} x {round(height * scale):,} "
                         f"pixel PNG; pictures are at most {MAX_SIDE:,} pixels a side: --scale "
                         f"{fits:g} or less fits")
    try:
        return svg_to_png(svg, scale or 1.0)
    except PictureTooLarge as error:
        raise UsageError(f"{error}; write .svg instead") from None
    except SchedError as error:  # cairosvg or the cairo library is missing: what to install
        raise UsageError(error.diagnostics[0].message) from None


def resolve_stages(spec: PipelineSpec) -> PipelineSpec:
    """A `stages = auto` pipeline with the split the partitioner chooses (others unchanged; the
    partitioner is imported only when a pipeline has layers)."""
    if spec.layers is None:
        return spec
    from ..partition.auto_stages import resolve_stages as choose

    return choose(spec)


def family_of(spec: PipelineSpec, family: str) -> PipelineSpec:
    """The same pipeline under another family (`with_family`); `stages = auto` pipelines get the
    split chosen for that family."""
    return resolve_stages(with_family(spec, family))


def compiled_timeline(spec: PipelineSpec):
    """The compiled plan and its simulated timeline, for the commands that draw or report one; a
    search Ctrl-C cut short is an interruption there (nothing drawn from a plan half searched)."""
    compiled = compile_spec(spec)
    if getattr(compiled.search, "interrupted", False):
        raise KeyboardInterrupt
    return compiled, simulate(compiled.spec, compiled.dag, compiled.plan)


def print_error(error: SchedError, path: str | None = None) -> None:
    source = getattr(error, "source", None)
    if source is None and path:
        try:
            source = SourceFile(path, Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            source = None
    print(format_error(error, source), file=sys.stderr)


def format_error(error: SchedError, source: SourceFile | None) -> str:
    """Each diagnostic as `render_diagnostic` writes it; an unlocated one starts `schedc: error:`,
    the prefix of every message that has no place in a file."""
    return "\n\n".join(("schedc: " if d.span is None else "") + render_diagnostic(d, source)
                       for d in error.diagnostics)
