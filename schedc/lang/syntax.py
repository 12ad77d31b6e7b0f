"""From .sched text to an AST whose every node carries its source span.

The grammar lives in `grammar/schedc.lark`, shipped inside the package as `schedc.grammar`.
Lark's exceptions are caught here, once, and turned into located `SchedError`s; nothing past this
module sees a lark exception.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer

from ..errors import Diagnostic, SchedError, Span
from ..ir import Instr, parse_instr_token
from .parse_errors import COMMON_MISTAKES, diagnostic_from_lark

__all__ = ["COMMON_MISTAKES", "parse_program", "parse_rank_lines", "load_parser", "bounded_int", "shorten"]


MAX_WHOLE = 999_999_999  # the largest rank, stage, microbatch or peer number a file may write
_DIGITS = re.compile(r"[0-9]+")


def shorten(text: str, limit: int = 24) -> str:
    """`text` for a message: whole when short, else its start and its length."""
    return text if len(text) <= limit else f"{text[:limit - 8]}... ({len(text):,} characters)"


def bounded_int(text: str, span: Span, what: str = "number") -> int:
    """`text` (ASCII digits) as an int, refused at `span` beyond MAX_WHOLE; the length is checked
    before `int()` sees the text, so no input reaches Python's 4300-digit conversion limit."""
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_WHOLE)) or int(digits) > MAX_WHOLE:
        raise SchedError([Diagnostic(f"{what} {shorten(text)} is too large: schedc takes whole "
                                     f"numbers up to {MAX_WHOLE:,}", span)])
    return int(digits)


def _check_token_numbers(token: str, span: Span) -> None:
    for run in _DIGITS.findall(token):
        bounded_int(run, span, f"in '{shorten(token)}', the number")


@dataclass(frozen=True, slots=True)
class Setting:
    """`key = value` inside a pipeline, a cost or a memory block; `value` is the raw text."""

    key: str
    value: str
    span: Span
    key_span: Span
    value_span: Span


@dataclass(frozen=True, slots=True)
class ChunkSection:
    """`F { attention = 4.1  dispatch = 6.7 }` inside a chunk: one side's parts, in written order."""

    side: str
    side_span: Span
    parts: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ChunkAST:
    """A `chunk { ... }` block: its settings (`layers`, `communication` (its value the names joined
    by ", "), `comm_share`) and its sections (F, B, W)."""

    settings: tuple[Setting, ...]
    sections: tuple[ChunkSection, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class StageOverride:
    """`stage 0, 7 { F = 2 }`: settings that apply to the listed stages only (and, in a cost block,
    the stages' own `chunk { }`)."""

    stages: tuple[tuple[int, Span], ...]
    settings: tuple[Setting, ...]
    span: Span
    chunk: ChunkAST | None = None
    sections: tuple[ChunkSection, ...] = ()  # a recompute block's options, `full { cost = 1 }`


@dataclass(frozen=True, slots=True)
class Block:
    """A `cost { ... }`, `memory { ... }` or `recompute { ... }` block (a cost block may hold a
    `chunk { }` and its `link { }`s as sections; a recompute block holds options, each a section)."""

    kind: str
    settings: tuple[Setting, ...]
    overrides: tuple[StageOverride, ...]
    span: Span
    chunk: ChunkAST | None = None
    sections: tuple[ChunkSection, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One instruction token of a hand-written order, with its place."""

    instr: Instr
    span: Span


@dataclass(frozen=True, slots=True)
class RankLine:
    """`rank 2: F2.0 F2.1 ...`"""

    rank: int
    rank_span: Span
    items: tuple[OrderItem, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class OrderBlock:
    """`order { rank 0: ...  rank 1: ... }`"""

    lines: tuple[RankLine, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LayerItem:
    """`name * repeat { F = 1 ... }` inside a `layers` block (repeat 1 when not written)."""

    name: str
    name_span: Span
    repeat: int
    repeat_span: Span | None
    settings: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LayersBlock:
    """`layers { ... }`: the model's layers in order."""

    items: tuple[LayerItem, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class PipelineAST:
    """One `pipeline NAME { ... }` as written, before any checking."""

    name: str
    name_span: Span
    settings: tuple[Setting, ...]
    blocks: tuple[Block, ...]
    orders: tuple[OrderBlock, ...]
    span: Span
    layers: tuple[LayersBlock, ...] = ()  # `devices { }` is a Block of kind "devices"


@dataclass(frozen=True, slots=True)
class ProgramAST:
    """A whole .sched file."""

    file: str
    pipelines: tuple[PipelineAST, ...]


@lru_cache(maxsize=None)
def load_parser(start: str = "start") -> Lark:
    """The LALR parser for the grammar shipped in the package (cached)."""
    text = resources.files("schedc.grammar").joinpath("schedc.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", start=start, propagate_positions=True, strict=_strict_ok())


def _strict_ok() -> bool:
    """Lark's strict mode checks terminal collisions with `interegular`; use it when installed."""
    try:
        import interegular  # noqa: F401
    except ImportError:
        return False
    return True


class _Builder(Transformer):
    """Builds AST dataclasses; one method per rule that needs a callback (explicit, no v_args)."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta_or_token) -> Span:
        m = meta_or_token
        return Span(self.file, m.line, m.column, m.end_line, m.end_column)

    def __default__(self, data, children, meta):
        raise AssertionError(f"grammar rule without a builder: {data}")

    def start(self, children):
        return ProgramAST(self.file, tuple(children))

    def plan_text(self, children):
        return tuple(children)

    def _token_setting(self, key: Token, value: Token) -> Setting:
        span = Span(self.file, key.line, key.column, value.end_line, value.end_column)
        return Setting(str(key), str(value), span, self._span(key), self._span(value))

    def setting(self, children):
        return self._token_setting(children[0], children[1])

    memory_setting = setting

    def cost_setting(self, children):
        return self._token_setting(children[0], children[1])

    def plain_key(self, children):
        return children[0]

    overlap_key = plain_key

    def stage_list(self, children):
        return tuple((bounded_int(str(t), self._span(t), "stage"), self._span(t)) for t in children)

    def _override(self, children):
        stages, *items = children
        settings = tuple(c for c in items if isinstance(c, Setting))
        last = items[-1].span if items else stages[-1][1]
        first = stages[0][1]
        span = Span(self.file, first.line, first.col, last.end_line, last.end_col)
        sections = tuple(c for c in items if isinstance(c, ChunkSection))
        return StageOverride(stages, settings, span, _one_chunk(items), sections)

    cost_stage = _override
    memory_stage = _override
    recompute_stage = _override
    recompute_choice = setting

    def _block(self, kind, children, meta):
        settings = tuple(c for c in children if isinstance(c, Setting))
        overrides = tuple(c for c in children if isinstance(c, StageOverride))
        sections = tuple(c for c in children if isinstance(c, ChunkSection))
        return Block(kind, settings, overrides, self._span(meta), _one_chunk(children), sections)

    def chunk_setting(self, children):
        key, *values = children
        span = Span(self.file, key.line, key.column, values[-1].end_line, values[-1].end_column)
        value_span = Span(self.file, values[0].line, values[0].column, values[-1].end_line,
                          values[-1].end_column)
        return Setting(str(key), ", ".join(str(v) for v in values), span, self._span(key), value_span)

    def chunk_section(self, children, meta=None):
        side, *parts = children
        last = parts[-1].span if parts else self._span(side)
        span = Span(self.file, side.line, side.column, last.end_line, last.end_col)
        return ChunkSection(str(side), self._span(side), tuple(parts), span)

    def chunk_block(self, children):
        settings = tuple(c for c in children if isinstance(c, Setting))
        sections = tuple(c for c in children if isinstance(c, ChunkSection))
        spans = [c.span for c in children]
        if not spans:
            return ChunkAST((), (), None)
        first, last = spans[0], spans[-1]
        return ChunkAST(settings, sections, Span(self.file, first.line, first.col, last.end_line, last.end_col))

    def cost_block(self, children):
        return ("cost", children)

    def recompute_block(self, children):
        return ("recompute", children)

    recompute_option = chunk_section
    link_block = chunk_section  # a cost block's `link { }`: a section named link, in Block.sections

    def memory_block(self, children):
        return ("memory", children)

    def order_block(self, children):
        return ("order", tuple(children))

    def devices_block(self, children):
        return ("devices", children)

    device_rank = _override

    def layers_block(self, children):
        return ("layers", tuple(children))

    def layer_item(self, children, meta=None):
        name, *rest = children
        repeat = rest[0] if rest and isinstance(rest[0], Token) else None
        settings = tuple(c for c in rest if isinstance(c, Setting))
        last = settings[-1].span if settings else self._span(repeat or name)
        span = Span(self.file, name.line, name.column, last.end_line, last.end_col)
        return LayerItem(str(name), self._span(name), int(repeat) if repeat else 1,
                         self._span(repeat) if repeat else None, settings, span)

    def _item(self, first: Token, last: Token) -> OrderItem:
        """The instruction written from `first` to `last` (one token, or F&B's two)."""
        span = Span(self.file, first.line, first.column, last.end_line, last.end_column)
        tokens = (first,) if first is last else (first, last)
        for token in tokens:
            _check_token_numbers(str(token), span)
        instrs = [parse_instr_token(str(t)) for t in tokens]
        return OrderItem(instrs[0] if len(instrs) == 1 else Instr.overlap(*instrs), span)

    def compute(self, children):
        return self._item(children[0], children[0])

    comm = compute
    grad_sum = compute

    def overlap(self, children):
        return self._item(children[0], children[1])

    def rank_line(self, children):
        rank_token, *items = children
        last = items[-1].span if items else self._span(rank_token)
        span = Span(self.file, rank_token.line, rank_token.column, last.end_line, last.end_col)
        rank = bounded_int(str(rank_token), self._span(rank_token), "rank")
        return RankLine(rank, self._span(rank_token), tuple(items), span)


def _one_chunk(items) -> ChunkAST | None:
    """The one `chunk { }` among a block's items (None if there is none); a second is an error."""
    chunks = [c for c in items if isinstance(c, ChunkAST)]
    if len(chunks) > 1:
        raise SchedError([Diagnostic("a second `chunk { }` here: a cost block (and each stage "
                                     "block) holds at most one", chunks[1].span)])
    return chunks[0] if chunks else None


def _pipeline_from_tree(builder: _Builder, tree: lark.Tree) -> PipelineAST:
    name_token, *statements = tree.children
    built = [builder.transform(s) if isinstance(s, lark.Tree) else s for s in statements]
    settings, blocks, orders, layers = [], [], [], []
    for stmt, raw in zip(built, statements):
        if isinstance(stmt, Setting):
            settings.append(stmt)
        elif stmt[0] == "order":
            orders.append(OrderBlock(stmt[1], builder._span(raw.meta)))
        elif stmt[0] == "layers":
            layers.append(LayersBlock(stmt[1], builder._span(raw.meta)))
        else:
            blocks.append(builder._block(stmt[0], stmt[1], raw.meta))
    return PipelineAST(
        str(name_token), builder._span(name_token), tuple(settings), tuple(blocks), tuple(orders),
        builder._span(tree.meta), tuple(layers),
    )


def parse_program(text: str, file: str = "<input>") -> ProgramAST:
    """Parse a whole .sched file into its AST; raises `SchedError` with a located message."""
    tree = _parse_tree(text, file, "start")
    builder = _Builder(file)
    with _builder_errors():
        return ProgramAST(file, tuple(_pipeline_from_tree(builder, p) for p in tree.children))


def parse_rank_lines(text: str, file: str = "<plan>") -> tuple[RankLine, ...]:
    """Parse the printed text form of a plan (`rank R: tokens...` lines)."""
    tree = _parse_tree(text, file, "plan_text")
    with _builder_errors():
        return _Builder(file).transform(tree)


@contextmanager
def _builder_errors():
    """Lark wraps what a Transformer callback raises in VisitError; give back our SchedError."""
    try:
        yield
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, SchedError):
            raise exc.orig_exc from None
        raise


def _parse_tree(text: str, file: str, start: str) -> lark.Tree:
    try:
        return load_parser(start).parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise SchedError([diagnostic_from_lark(exc, text, file, load_parser("start").parse)]) from None
