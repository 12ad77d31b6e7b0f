"""Setting values: each converter turns a `Setting`'s raw text into a typed value or a located
`SchedError` that names the setting and what it takes (used by `spec.check_pipeline`)."""

from __future__ import annotations

import difflib

from ..errors import Diagnostic, Note, SchedError, Span
from .syntax import Setting

_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


def located_error(message: str, span: Span | None, *notes: Note) -> SchedError:
    return SchedError([Diagnostic(message, span, tuple(notes))])


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_key(setting: Setting, known, where: str) -> SchedError:
    return located_error(f"unknown {where} setting '{setting.key}'{suggest(setting.key, known)} "
                f"(known: {', '.join(known)})", setting.key_span)


def to_int(setting: Setting, minimum: int = 1) -> int:
    try:
        value = int(setting.value)
    except ValueError:
        raise located_error(f"{setting.key} must be a whole number, got '{setting.value}'", setting.value_span) from None
    if value < minimum:
        raise located_error(f"{setting.key} must be at least {minimum}, got {value}", setting.value_span)
    return value


def to_number(setting: Setting) -> float:
    try:
        value = float(setting.value)
    except ValueError:
        raise located_error(f"{setting.key} must be a number, got '{setting.value}'", setting.value_span) from None
    if value < 0 or value != value or value == float("inf"):
        raise located_error(f"{setting.key} must be a finite number >= 0, got '{setting.value}'", setting.value_span)
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
