"""Source spans, diagnostics and their rendering with a caret under the offending text.

Every user-facing error in schedc is a `Diagnostic` with a `Span`; a `SchedError` carries one or
more of them. Rendering needs the source text, which a `SourceFile` keeps.

May import: nothing
Libraries at module level: none
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns count from 1, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Note:
    """A secondary place that explains a diagnostic ("microbatches = 6 at 3:5")."""

    message: str
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One error: what is wrong, where, and the related places."""

    message: str
    span: Span | None = None
    notes: tuple[Note, ...] = ()
    detail: str = ""  # extra text printed after the caret (e.g. a window of the schedule grid)


class SchedError(Exception):
    """Raised for any bad input; holds the diagnostics. Never escapes the CLI as a traceback."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.message for d in self.diagnostics))


@dataclass(frozen=True, slots=True)
class SourceFile:
    """The text of one input, kept so that diagnostics can show the offending line."""

    name: str
    text: str

    def line(self, number: int) -> str | None:
        """Line `number` (from 1) as the parsers count lines: only `\\n` ends one (`str.splitlines`
        would also break at \\f, \\v, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029). Characters
        that do not print are shown as spaces, so columns still line up; None past the end."""
        lines = self.text.split("\n")
        if not 1 <= number <= len(lines):
            return None
        return "".join(c if c.isprintable() or c == "\t" else " " for c in lines[number - 1].rstrip("\r"))


def _caret_lines(span: Span, source: SourceFile | None) -> list[str]:
    if source is None or source.name != span.file:
        return []
    text = source.line(span.line)
    if text is None:
        return []
    width = span.end_col - span.col if span.end_line == span.line else len(text) - span.col + 1
    start = max(0, min(span.col - 1 - SHOWN_COLUMNS // 4, len(text) - SHOWN_COLUMNS))
    shown = text[start:start + SHOWN_COLUMNS]
    width = max(1, min(width, len(shown) - (span.col - 1 - start)))
    cut_left, cut_right = ("..." if start else ""), ("..." if start + SHOWN_COLUMNS < len(text) else "")
    pad = " " * (len(cut_left) + span.col - 1 - start)
    return [f"    {cut_left}{shown}{cut_right}", f"    {pad}" + "^" * width]


SHOWN_COLUMNS = 120  # a longer source line is shown as a window of this many columns around the error


def render_diagnostic(diagnostic: Diagnostic, source: SourceFile | None = None) -> str:
    """`file:line:col: error: message`, the source line, a caret, then notes and detail."""
    where = f"{diagnostic.span}: " if diagnostic.span else ""
    out = [f"{where}error: {diagnostic.message}"]
    if diagnostic.span:
        out += _caret_lines(diagnostic.span, source)
    for note in diagnostic.notes:
        note_where = f"{note.span}: " if note.span else ""
        out.append(f"{note_where}note: {note.message}")
        if note.span:
            out += _caret_lines(note.span, source)
    if diagnostic.detail:
        out.append(diagnostic.detail.rstrip("\n"))
    return "\n".join(out)


def render_error(error: SchedError, source: SourceFile | None = None) -> str:
    """All diagnostics of an error, separated by blank lines."""
    return "\n\n".join(render_diagnostic(d, source) for d in error.diagnostics)


def at(span: Span | None) -> str:
    """A short `line:col` for use inside messages ("microbatches = 6 at 3:5")."""
    return f" at {span.line}:{span.col}" if span else ""


def decode_source(data: bytes, file: str) -> str:
    """The UTF-8 text of an input file; bytes that are not UTF-8 are a `SchedError` at their line
    and column (carrying the file's text, undecodable bytes replaced, to show the caret)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        error = SchedError([Diagnostic(f"this file is not UTF-8 text: byte 0x{data[exc.start]:02x} "
                                       "cannot start or continue a character; save it as UTF-8",
                                       Span(file, line, col, line, col + 1))])
        error.source = SourceFile(file, data.decode("utf-8", errors="replace"))
        raise error from None
