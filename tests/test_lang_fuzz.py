"""Bad input never raises anything but SchedError: garbage text and mutated valid files."""

import dataclasses
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedc
from schedc.compiler import compile_spec
from schedc.errors import SchedError, render_error

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.sched"))
ALPHABET = "pipelinerankmicrobatchesschedulecostmemoryorder{}=:&.,@#_-\n \t0123456789FBIWrSENDRECV"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def compile_all(text: str) -> None:
    """Parse, check and compile; only SchedError may escape, and it must render. A searching
    pipeline gets a short budget (a mutation may lengthen `search_time = 1` to 17777 seconds: the
    search would honour it)."""
    try:
        for spec in schedc.parse(text, "fuzz.sched"):
            if spec.ranks * spec.microbatches <= 512:
                compile_spec(dataclasses.replace(spec, search_time=min(spec.search_time, 0.2)))
    except SchedError as error:
        rendered = render_error(error, schedc.SourceFile("fuzz.sched", text))
        assert "error:" in rendered


@FUZZ
@given(st.text(alphabet=ALPHABET, max_size=200))
def test_garbage_text_gives_located_errors(text):
    compile_all(text)


@FUZZ
@given(st.text(max_size=80))
def test_any_unicode_gives_located_errors(text):
    compile_all(text)


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_examples_give_located_errors(path, data):
    text = path.read_text()
    start = data.draw(st.integers(0, len(text)))
    length = data.draw(st.integers(0, 12))
    insert = data.draw(st.text(alphabet=ALPHABET, max_size=8))
    compile_all(text[:start] + insert + text[start + length:])


@FUZZ
@given(st.integers(1, 6), st.integers(1, 12), st.sampled_from(
    ["gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv", "dualpipe", "dualpipev", "auto"]))
def test_any_size_compiles_or_explains(ranks, microbatches, family):
    compile_all(f"pipeline p {{ ranks = {ranks} microbatches = {microbatches} schedule = {family} }}")


ODD_BREAKS = ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]


@FUZZ
@given(st.sampled_from([p for p in EXAMPLES if "order" in p.read_text()] * 3 + EXAMPLES), st.data())
def test_long_numbers_and_odd_line_breaks_give_located_errors(path, data):
    """Digit runs past Python's int limit and characters that break `str.splitlines` but not the
    parser's lines, planted anywhere in a valid file."""
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 3))):
        digits = [i + 1 for i, c in enumerate(text) if c.isdigit()]  # lengthen a written number
        at = data.draw(st.one_of(st.integers(0, len(text)), st.sampled_from(digits)))
        plant = data.draw(st.one_of(st.sampled_from(ODD_BREAKS),
                                    st.integers(10, 5000).map(lambda n: "7" * n)))
        text = text[:at] + plant + text[at:]
    compile_all(text)
