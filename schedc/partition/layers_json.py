"""The layer description as JSON, as a profiler writes it.

    [{"name": "embed", "F": 3, "B": 6, "W": 3, "activation": 1, "params": 10},
     {"name": "layers", "F": 1, "repeat": 32},
     {"name": "head", "F": 5}]

(or `{"layers": [...]}`). F is required; B defaults to 2F, W to B/2, activation and params to
0, repeat to 1, kind (Megatron's letter E/t/m/L) to a guess from the name. Every problem is a
`SchedError` located at `file:line:col` of the offending entry or value.
"""

from __future__ import annotations

import difflib
import json
import math
import re

from ..errors import Diagnostic, SchedError, Span
from ..lang.layers import KINDS, LayerModel, check_unique, expand_run

NUMBER_KEYS = ("F", "B", "W", "activation", "params")
KEYS = ("name",) + NUMBER_KEYS + ("repeat", "kind")


class _Locator:
    """Character offsets of a text as `Span`s."""

    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def span(self, start: int, end: int | None = None) -> Span:
        line = max(i for i, s in enumerate(self.starts) if s <= start)
        end = start + 1 if end is None else end
        end_line = max(i for i, s in enumerate(self.starts) if s <= max(start, end - 1))
        return Span(self.file, line + 1, start - self.starts[line] + 1, end_line + 1,
                    end - self.starts[end_line] + (1 if end_line == line else 0))

    def key_span(self, start: int, end: int, key: str) -> Span:
        """The quoted `key` inside the object text[start:end]."""
        found = re.compile(r'"%s"' % re.escape(key)).search(self.text, start, end)
        return self.span(found.start(), found.end()) if found else self.span(start)

    def value_span(self, start: int, end: int, key: str) -> Span:
        """The value of `key` inside the object text[start:end], else the object's first line."""
        found = re.compile(r'"%s"\s*:\s*' % re.escape(key)).search(self.text, start, end)
        if not found:
            return self.span(start)
        tail = re.compile(r'[^,}\]\n]*').match(self.text, found.end())
        return self.span(found.end(), max(found.end() + 1, tail.end()))


def _error(message: str, span: Span) -> SchedError:
    return SchedError([Diagnostic(message, span)])


def read_layers_json(text: str, file: str = "<layers.json>") -> LayerModel:
    """Parse a JSON layer description into a `LayerModel` (repeats expanded, names unique)."""
    where = _Locator(text, file)
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(f"not valid JSON: {exc.msg}", where.span(min(exc.pos, max(0, len(text) - 1))))
    entries = _entries(text, where)
    counts = [_repeat(obj, where, start, end) for obj, start, end in entries]
    total, layers = sum(counts), []
    for (obj, start, end), repeat in zip(entries, counts):
        values = _values(obj, where, start, end)
        name = obj.get("name", f"layer{len(layers)}")
        if not isinstance(name, str) or not name.strip():
            raise _error("a layer's name is a non-empty string", where.value_span(start, end, "name"))
        kind = obj.get("kind")
        if kind is not None and kind not in KINDS:
            raise _error(f"kind is one of {', '.join(KINDS)} (Megatron's layout letters: embedding, "
                         f"transformer block, MTP, loss), got {kind!r}", where.value_span(start, end, "kind"))
        layers += expand_run(name, repeat, values, kind, where.span(start), len(layers), total)
    if not layers:
        raise _error("no layers in this file; write a list like [{\"name\": \"embed\", \"F\": 3}]",
                     where.span(0))
    check_unique(layers)
    return LayerModel(tuple(layers), where.span(0))


def _entries(text: str, where: _Locator) -> list[tuple[dict, int, int]]:
    """The layer objects with their character ranges, from the top-level list."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if text.startswith("{", pos):
        found = re.compile(r'"layers"\s*:\s*').search(text, pos)
        if not found or not isinstance(json.loads(text), dict) or "layers" not in json.loads(text):
            raise _error('expected a list of layers, or {"layers": [...]}', where.span(pos))
        pos = found.end()
    if not text.startswith("[", pos):
        raise _error('expected a list of layers, or {"layers": [...]}', where.span(pos))
    entries, pos = [], _skip(text, pos + 1)
    while pos < len(text) and text[pos] != "]":
        obj, end = decoder.raw_decode(text, pos)
        if not isinstance(obj, dict):
            raise _error("each layer is an object such as {\"name\": \"embed\", \"F\": 3}",
                         where.span(pos, end))
        entries.append((obj, pos, end))
        pos = _skip(text, end)
        pos = _skip(text, pos + 1) if text.startswith(",", pos) else pos
    return entries


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _repeat(obj: dict, where: _Locator, start: int, end: int) -> int:
    repeat = obj.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise _error(f"repeat is a whole number >= 1, got {json.dumps(repeat)}",
                     where.value_span(start, end, "repeat"))
    return repeat


def _values(obj: dict, where: _Locator, start: int, end: int) -> dict[str, float]:
    for key in obj:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise _error(f"unknown layer key '{key}'{hint} (known: {', '.join(KEYS)})",
                         where.key_span(start, end, key))
    values = {}
    for key in NUMBER_KEYS:
        if key not in obj:
            continue
        value = obj[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            raise _error(f"{key} must be a finite number >= 0, got {json.dumps(value)}",
                         where.value_span(start, end, key))
        values[key] = value
    if "F" not in values:
        name = obj.get("name", "?")
        raise _error(f"layer '{name}' has no forward time: give it \"F\" (B defaults to 2F, W to B/2)",
                     where.span(start))
    return values
