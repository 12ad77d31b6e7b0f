"""`schedc balance` end to end, and its error messages pinned by golden files.

Run `pytest tests/test_experts_cli.py --update-goldens` to rewrite tests/golden/balance/*.out
after a deliberate change, then read the diff.
"""

import json
import os
from pathlib import Path

import pytest

from schedc.cli import main

GOLDEN = Path(__file__).parent / "golden" / "balance"
R8 = ["--replicas", "8", "--gpus", "4"]
BAD = {  # case -> arguments after `balance`; run inside tests/golden/balance
    "ragged": ["ragged.csv", *R8],
    "too_long": ["too_long.csv", *R8],
    "bad_cell": ["bad_cell.csv", *R8],
    "negative": ["negative.csv", *R8],
    "nan_cell": ["nan_cell.csv", *R8],
    "empty": ["empty.csv", *R8],
    "broken_json": ["broken.json", *R8],
    "unknown_type": ["good.txt", *R8],
    "missing_file": ["missing.csv", *R8],
    "replicas_not_multiple": ["good.csv", "--replicas", "10", "--gpus", "4"],
    "replicas_below_experts": ["good.csv", "--replicas", "4", "--gpus", "4"],
    "groups_not_dividing": ["good.csv", *R8, "--groups", "3"],
    "gpus_not_multiple_of_nodes": ["good.csv", "--replicas", "12", "--gpus", "6", "--nodes", "4"],
    "hierarchical_impossible": ["good.csv", *R8, "--groups", "2", "--nodes", "4", "--hierarchical"],
    "previous_wrong_shape": ["good.csv", "--replicas", "12", "--gpus", "4", "--previous",
                             "previous_wrong_shape.json"],
    "speeds_count": ["good.csv", *R8, "--speeds", "1,1"],
    "speeds_bad": ["good.csv", *R8, "--speeds", "1,1,fast,1"],
    "duplicates_impossible": ["good.csv", "--replicas", "40", "--gpus", "4"],
    "max_moves_alone": ["good.csv", *R8, "--max-moves", "3"],
}


def run_in_golden(args, capsys):
    cwd = os.getcwd()
    os.chdir(GOLDEN)  # so messages name files as a user would type them
    try:
        status = main(["balance", *args])
    finally:
        os.chdir(cwd)
    return status, capsys.readouterr()


@pytest.mark.parametrize("case", sorted(BAD))
def test_balance_bad_input_golden(case, capsys, update_goldens):
    status, out = run_in_golden(BAD[case], capsys)
    assert status == 1, out.err
    assert "Traceback" not in out.err and out.out == ""
    expected = GOLDEN / f"{case}.out"
    if update_goldens or not expected.exists():
        expected.write_text(out.err)
    assert out.err == expected.read_text()


@pytest.mark.parametrize("case,where", [("ragged", "ragged.csv:3:6:"), ("too_long", "too_long.csv:3:9:"),
                                        ("bad_cell", "bad_cell.csv:2:4:"), ("negative", "negative.csv:2:5:"),
                                        ("nan_cell", "nan_cell.csv:1:7:")])
def test_balance_csv_errors_name_row_and_column(case, where, capsys):
    _status, out = run_in_golden(BAD[case], capsys)
    assert out.err.startswith(where) and "^" in out.err


def _cairo_missing() -> bool:
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):
        return True
    return False


@pytest.mark.skipif(_cairo_missing(), reason="cairosvg or the cairo library is not installed")
def test_balance_draws_png(tmp_path, capsys):
    png = tmp_path / "p.png"
    assert main(["balance", str(GOLDEN / "good.csv"), "--replicas", "12", "--gpus", "4", "--png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_balance_end_to_end(tmp_path, capsys):
    loads = str(GOLDEN / "good.csv")
    placement, svg = tmp_path / "p.json", tmp_path / "p.svg"
    assert main(["balance", loads, "--replicas", "12", "--gpus", "4", "-o", str(placement),
                 "--svg", str(svg)]) == 0
    out = capsys.readouterr().out
    assert "no-redund" in out and "eplb" in out and "best" in out and "bound" in out
    plan = json.loads(placement.read_text())
    assert set(plan) >= {"phy2log", "log2phy", "logcnt", "gpu_loads", "balancedness", "lower_bound"}
    assert len(plan["phy2log"]) == 2 and len(plan["phy2log"][0]) == 12
    assert svg.read_text().startswith("<svg")
    assert main(["balance", loads, "--replicas", "12", "--gpus", "4", "--previous", str(placement),
                 "--policy", "eplb", "--speeds", "2x1,2x0.5"]) == 0
    out = capsys.readouterr().out
    assert "moved" in out


def test_balance_says_what_to_install_without_numpy(monkeypatch, capsys):
    import importlib

    command = importlib.import_module("schedc.cli.balance")
    monkeypatch.setattr(command, "missing_modules", lambda: ["numpy"])
    assert main(["balance", "x.csv", *R8]) == 1
    assert "this command needs numpy and scipy: pip install 'schedc[balance]'" in capsys.readouterr().err
