"""Checking one written value: numbers, words and choices, each refused at its place.

Every number a user writes passes through here (or `bounded_int`), so none can overflow a float or
exceed Python's int-to-str digit limit into a traceback.
"""

from __future__ import annotations

import difflib

from ..errors import Diagnostic, Note, SchedError, Span
from .syntax import Block, PipelineAST, Setting, bounded_int, shorten

_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")
# The most compute ops (DAG nodes) one pipeline may have, whichever reader made it (.sched or
# PyTorch CSV). DualPipe on 64 ranks x 512 microbatches has 98,304 and compiles, verifies and
# simulates in about ten seconds; the time grows faster than the ops (64 x 2048 1F1B: ~50 s).
MAX_OPS = 100_000
MAX_NUMBER = 1e15  # the largest cost, activation or limit: sums over millions of ops stay exact-ish


def _err(message: str, span: Span | None, *notes: Note) -> SchedError:
    return SchedError([Diagnostic(message, span, tuple(notes))])


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _unknown_key(setting: Setting, known, where: str) -> SchedError:
    return _err(f"unknown {where} setting '{setting.key}'{_suggest(setting.key, known)} "
                f"(known: {', '.join(known)})", setting.key_span)


def _to_int(setting: Setting, minimum: int = 1) -> int:
    digits = setting.value[1:] if setting.value[:1] in ("+", "-") else setting.value
    if not digits.isdigit():
        raise _err(f"{setting.key} must be a whole number, got '{shorten(setting.value)}'",
                   setting.value_span)
    value = bounded_int(digits, setting.value_span, setting.key) * (-1 if setting.value[0] == "-" else 1)
    if value < minimum:
        raise _err(f"{setting.key} must be at least {minimum}, got {value}", setting.value_span)
    return value


def _to_number(setting: Setting) -> float:
    try:
        value = float(setting.value)
    except ValueError:
        raise _err(f"{setting.key} must be a number, got '{shorten(setting.value)}'",
                   setting.value_span) from None
    if value < 0 or value != value:
        raise _err(f"{setting.key} must be a number >= 0, got '{shorten(setting.value)}'",
                   setting.value_span)
    if value > MAX_NUMBER:
        raise _err(f"{setting.key} = {shorten(setting.value)} is too large: schedc takes costs and "
                   f"sizes up to {MAX_NUMBER:g}, so that sums over every op stay finite",
                   setting.value_span)
    return int(value) if value.is_integer() else value


def _to_bool(setting: Setting) -> bool:
    word = setting.value.lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise _err(f"{setting.key} must be true or false, got '{setting.value}'", setting.value_span)


def _to_choice(setting: Setting, choices) -> str:
    word = setting.value.lower()
    if word not in choices:
        raise _err(f"unknown {setting.key} '{setting.value}'{_suggest(word, choices)} "
                   f"(one of: {', '.join(choices)})", setting.value_span)
    return word


def _unique(settings, what: str) -> dict[str, Setting]:
    seen: dict[str, Setting] = {}
    for s in settings:
        if s.key in seen:
            raise _err(f"{s.key} is set twice{what}", s.key_span,
                       Note("first set here", seen[s.key].key_span))
        seen[s.key] = s
    return seen


def find_block(ast: PipelineAST, kind: str) -> Block | None:
    found = [b for b in ast.blocks if b.kind == kind]
    if len(found) > 1:
        raise _err(f"more than one {kind} block in pipeline '{ast.name}'; merge them", found[1].span,
                   Note("first one here", found[0].span))
    return found[0] if found else None


def _check_stage_exists(stage: int, span: Span, num_stages: int) -> None:
    if stage >= num_stages:
        raise _err(f"stage {stage} does not exist: this pipeline has stages 0..{num_stages - 1}", span)


def check_op_budget(ops: int, span: Span | None, what: str) -> None:
    """Refuse, at `span`, a pipeline of more than MAX_OPS compute ops, before anything is built."""
    if ops > MAX_OPS:
        raise _err(f"{what} has {ops:,} compute ops (stages x microbatches x op kinds); schedc "
                   f"takes up to {MAX_OPS:,}, which compile, verify and simulate in about ten seconds "
                   "(the time grows faster than the ops): is a number mistyped?", span)
