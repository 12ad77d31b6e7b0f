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


def located_error(message: str, span: Span | None, *notes: Note) -> SchedError:
    return SchedError([Diagnostic(message, span, tuple(notes))])


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_key(setting: Setting, known, where: str) -> SchedError:
    return located_error(f"unknown {where} setting '{setting.key}'{suggest(setting.key, known)} "
                f"(known: {', '.join(known)})", setting.key_span)


def to_int(setting: Setting, minimum: int = 1) -> int:
    digits = setting.value[1:] if setting.value[:1] in ("+", "-") else setting.value
    if not digits.isdigit():
        raise located_error(f"{setting.key} must be a whole number, got '{shorten(setting.value)}'",
                   setting.value_span)
    value = bounded_int(digits, setting.value_span, setting.key) * (-1 if setting.value[0] == "-" else 1)
    if value < minimum:
        raise located_error(f"{setting.key} must be at least {minimum}, got {value}", setting.value_span)
    return value


def to_number(setting: Setting) -> float:
    try:
        value = float(setting.value)
    except ValueError:
        raise located_error(f"{setting.key} must be a number, got '{shorten(setting.value)}'",
                   setting.value_span) from None
    if value < 0 or value != value:
        raise located_error(f"{setting.key} must be a number >= 0, got '{shorten(setting.value)}'",
                   setting.value_span)
    if value > MAX_NUMBER:
        raise located_error(f"{setting.key} = {shorten(setting.value)} is too large: schedc takes costs and "
                   f"sizes up to {MAX_NUMBER:g}, so that sums over every op stay finite",
                   setting.value_span)
    return int(value) if value.is_integer() else value


def to_bool(setting: Setting) -> bool:
    word = setting.value.lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise located_error(f"{setting.key} must be true or false, got '{setting.value}'", setting.value_span)


def to_choice(setting: Setting, choices) -> str:
    word = setting.value.lower()
    if word not in choices:
        raise located_error(f"unknown {setting.key} '{setting.value}'{suggest(word, choices)} "
                   f"(one of: {', '.join(choices)})", setting.value_span)
    return word


def unique_settings(settings, what: str) -> dict[str, Setting]:
    seen: dict[str, Setting] = {}
    for s in settings:
        if s.key in seen:
            raise located_error(f"{s.key} is set twice{what}", s.key_span,
                       Note("first set here", seen[s.key].key_span))
        seen[s.key] = s
    return seen


def find_block(ast: PipelineAST, kind: str) -> Block | None:
    found = [b for b in ast.blocks if b.kind == kind]
    if len(found) > 1:
        raise located_error(f"more than one {kind} block in pipeline '{ast.name}'; merge them", found[1].span,
                   Note("first one here", found[0].span))
    return found[0] if found else None


def check_stage_exists(stage: int, span: Span, num_stages: int) -> None:
    if stage >= num_stages:
        raise located_error(f"stage {stage} does not exist: this pipeline has stages 0..{num_stages - 1}", span)


def check_op_budget(ops: int, span: Span | None, what: str) -> None:
    """Refuse, at `span`, a pipeline of more than MAX_OPS compute ops, before anything is built."""
    if ops > MAX_OPS:
        raise located_error(f"{what} has {ops:,} compute ops (stages x microbatches x op kinds); schedc "
                   f"takes up to {MAX_OPS:,}, which compile, verify and simulate in about ten seconds "
                   "(the time grows faster than the ops): is a number mistyped?", span)


def to_memory_number(setting: Setting) -> float:
    value = to_number(setting)
    if setting.key == "weight_grad" and value > 1:
        raise located_error(f"weight_grad is the fraction of a stage's activation kept from I until W, "
                   f"between 0 and 1; got {setting.value}", setting.value_span)
    return value


def search_settings(settings: dict[str, Setting]) -> dict:
    """`search_time` (seconds, > 0) and `seed` (a whole number) for schedule = search/optimal."""
    out = {}
    if "search_time" in settings:
        setting = settings["search_time"]
        try:
            budget = float(setting.value)
        except ValueError:
            budget = float("nan")
        if not budget > 0 or budget == float("inf"):
            raise located_error(f"search_time is the search's time budget in seconds and must be more than "
                       f"0, got '{setting.value}'", setting.value_span)
        out["search_time"] = budget
    if "seed" in settings:
        out["seed"] = to_int(settings["seed"], minimum=0)
    return out
