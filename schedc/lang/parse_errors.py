"""Lark's parse failures in words a person knows: the terminals' names, and a table of common
mistakes (each with bad examples a test parses) whose message replaces the generic one.

`syntax.py` catches lark's exceptions once and turns them into diagnostics here.
"""

from __future__ import annotations

import lark

from ..errors import Diagnostic, Span


# Names a person understands for the grammar's terminals, used in "expected ..." lists.
_TERMINAL_NAMES = {
    "NAME": "a name", "VALUE": "a value", "INT": "a whole number", "EQUAL": "'='",
    "LBRACE": "'{'", "RBRACE": "'}'", "COLON": "':'", "COMMA": "','", "AMPERSAND": "'&'",
    "COMPUTE": "an op such as F0.3", "COMM": "a send/receive such as SEND_F0.3@1",
    "GRAD_SUM": "GRAD_SUM@peer", "FB_KEY": "'F&B'", "PIPELINE": "'pipeline'",
    "COST": "'cost'", "MEMORY": "'memory'", "ORDER": "'order'", "STAGE": "'stage'",
    "RANK": "'rank'", "LAYERS": "'layers'", "DEVICES": "'devices'", "STAR": "'*'",
    "RECOMPUTE": "'recompute'",
    "$END": "the end of the file",
}

# Common mistakes, each with bad examples; the parser state of a failure is matched against them
# (lark's match_examples) and the human message shown instead of the generic one. A test parses
# every example and checks it gets its message.
COMMON_MISTAKES: dict[str, list[str]] = {
    "a setting needs '=' between its name and its value, as in `ranks = 8`": [
        "pipeline p { ranks 8 }",
        "pipeline p { ranks: 8 }",
        "pipeline p { cost { F 1 } }",
    ],
    "a file holds `pipeline NAME { ... }` blocks; put settings inside one": [
        "ranks = 8",
        "schedule = 1f1b",
    ],
    "an op is KIND STAGE.MICROBATCH, as in F0.3 (forward of stage 0, microbatch 3)": [
        "pipeline p { order { rank 0: F0 } }",
        "pipeline p { order { rank 0: F0,3 } }",
        "pipeline p { order { rank 0: X0.3 } }",
        "pipeline p { order { rank 0: F0.0 F0,1 } }",
        "pipeline p { order { rank 0: F0.0 F1 } }",
    ],
    "an order line starts with `rank N:`, as in `rank 0: F0.0 B0.0`": [
        "pipeline p { order { F0.0 } }",
        "pipeline p { order { rank 0 F0.0 } }",
    ],
    "a cost's stage block holds settings (`F = 2`) and its own `chunk { }`; the `link { }` is the "
    "whole cost block's": [f"pipeline p {{ {top} cost {{ {cost} stage 1 {{ {own} link {{ }} }} }} }}"
                           for top in ("", "ranks = 4") for cost in ("", "F = 1") for own in ("", "F = 1")],
    "a value is one word or number; quotes are not needed": [
        'pipeline p { schedule = "1f1b" }',
    ],
}


_OP_SHAPE = next(m for m in COMMON_MISTAKES if m.startswith("an op is"))


def _friendly_message(exc: lark.exceptions.UnexpectedInput, parse) -> str | None:
    try:
        message = exc.match_examples(parse, COMMON_MISTAKES, use_accepts=True)
    except Exception:  # match_examples re-parses the examples; never let it mask the real error
        message = None
    expected = getattr(exc, "expected", None) or set()
    token = getattr(exc, "token", None)
    if message is None and "COMPUTE" in expected and token is not None and token.type in ("VALUE", "NAME"):
        message = _OP_SHAPE  # a malformed op inside an order, wherever it stands on the line
    return message


def _expected_list(exc: lark.exceptions.UnexpectedInput) -> str:
    expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or set()
    names = sorted({_TERMINAL_NAMES.get(t, repr(t)) for t in expected})
    return ", ".join(names) if names else "something else"


def diagnostic_from_lark(exc: lark.exceptions.UnexpectedInput, text: str, file: str, parse) -> Diagnostic:
    """Lark's parse failure as one located diagnostic: the place, what was found, what was expected
    (in words a person knows), or the message of the common mistake it matches (`parse` parses a
    whole file, to match the examples against)."""
    line, col = max(1, exc.line if exc.line != -1 else 1), max(1, exc.column if exc.column != -1 else 1)
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        found = repr(text[exc.pos_in_stream]) if exc.pos_in_stream < len(text) else "end of file"
        width = 1
    elif isinstance(exc, lark.exceptions.UnexpectedEOF) or exc.token.type == "$END":
        lines = text.rstrip().split("\n")  # just after the last text, counting lines as lark does
        line, col, found, width = len(lines), len(lines[-1]) + 1, "end of file", 1
    else:
        found, width = repr(str(exc.token)), max(1, len(str(exc.token)))
    span = Span(file, line, col, line, col + width)
    friendly = _friendly_message(exc, parse)
    message = f"unexpected {found}; expected {_expected_list(exc)}"
    if found == "end of file" and "'}'" in _expected_list(exc):
        message += " (a '}' is missing)"
    if friendly:
        message = f"{friendly} (found {found})"
    return Diagnostic(message, span)
