"""Located errors: golden files pin each message with its line:col and caret (through the CLI).

Run `pytest tests/test_lang_errors.py --update-goldens` to rewrite the .out files after a deliberate
change, then read the diff.
"""

import os
from pathlib import Path

import pytest

from schedc.cli import main
from schedc.errors import SchedError
from schedc.lang.syntax import COMMON_MISTAKES, parse_program

GOLDEN = Path(__file__).parent / "golden" / "errors"
CASES = sorted(p.stem for p in GOLDEN.glob("*.sched"))
WITHOUT_SOLVER = "optimal_without_solver"  # run as on a machine without OR-Tools


def run_check(name, capsys):
    cwd = os.getcwd()
    os.chdir(GOLDEN)  # so messages name the file as a user would type it
    try:
        status = main(["check", f"{name}.sched"])
    finally:
        os.chdir(cwd)
    return status, capsys.readouterr()


@pytest.mark.parametrize("name", CASES)
def test_error_golden(name, capsys, update_goldens, monkeypatch):
    if name == WITHOUT_SOLVER:
        monkeypatch.setattr("schedc.search.exact.solver_installed", lambda: False)
    status, out = run_check(name, capsys)
    assert status == 1
    assert "Traceback" not in out.err
    expected = GOLDEN / f"{name}.out"
    if update_goldens or not expected.exists():
        expected.write_text(out.err)
    assert out.err == expected.read_text()
    first = out.err.splitlines()[0]
    assert first.startswith(f"{name}.sched:"), first  # file:line:col: error: ...
    assert "^" in out.err


def test_there_is_a_golden_for_each_kind_of_mistake():
    assert len(CASES) >= 20


@pytest.mark.parametrize("message,examples", list(COMMON_MISTAKES.items()))
def test_common_mistakes_get_their_human_message(message, examples):
    for example in examples:
        with pytest.raises(SchedError) as info:
            parse_program(example, "x.sched")
        assert message in info.value.diagnostics[0].message, example
