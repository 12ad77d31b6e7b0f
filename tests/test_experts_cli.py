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
    "not_npy": ["not_npy.npy", *R8],
    "not_torch": ["not_torch.pt", *R8],
}
IN_THE_INPUT = {"ragged", "too_long", "bad_cell", "negative", "nan_cell", "empty", "broken_json",
                "previous_wrong_shape"}  # exit 1: wrong numbers in a file; the others are usage or I/O (2)


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
    if case == "not_torch":
        pytest.importorskip("torch")  # without it the message says to install torch
    status, out = run_in_golden(BAD[case], capsys)
    assert status == (1 if case in IN_THE_INPUT else 2), out.err
    assert "Traceback" not in out.err and out.out == "" and out.err.count("\n") <= 3
    assert out.err.startswith("schedc: error: ") or case in IN_THE_INPUT
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
    assert main(["balance", "x.csv", *R8]) == 2
    assert "this command needs numpy and scipy: pip install 'schedc[balance]'" in capsys.readouterr().err


def test_an_object_npy_says_what_to_save_not_numpy_s_allow_pickle(tmp_path, capsys):
    import numpy as np

    path = tmp_path / "objects.npy"
    np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert main(["balance", str(path), *R8]) == 1
    err = capsys.readouterr().err
    assert err == (f"schedc: error: {path}: holds Python objects, not numbers; save a number array: "
                   "numpy.save(path, loads.astype(float))\n")


def test_a_pt_of_other_objects_is_one_line(tmp_path, capsys):
    import numpy as np
    torch = pytest.importorskip("torch")

    path = tmp_path / "objects.pt"
    torch.save({"loads": np.ones((2, 8))}, path)
    assert main(["balance", str(path), *R8]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"schedc: error: {path}: holds objects other than tensors") and err.count("\n") == 1


def test_balance_json_has_the_table_s_figures_and_the_placement(capsys):
    assert main(["balance", str(GOLDEN / "good.csv"), "--replicas", "12", "--gpus", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy"] == "best" and report["layers"] == 2 and report["experts"] == 8
    assert set(report["balancedness"]) == {"no_redundancy", "eplb", "chosen", "bound"}
    assert len(report["balancedness"]["chosen"]) == 2 and len(report["gap"]) == 2
    assert report["placement"]["phy2log"] and report["moves"] is None


def test_policy_eplb_names_each_column_once(tmp_path, capsys):
    loads, placement, svg = str(GOLDEN / "good.csv"), tmp_path / "p.json", tmp_path / "p.svg"
    assert main(["balance", loads, "--replicas", "12", "--gpus", "4", "--policy", "eplb",
                 "--svg", str(svg), "-o", str(placement)]) == 0
    head = capsys.readouterr().out.splitlines()[1]
    assert head.split() == ["layer", "no-redund", "eplb", "bound", "gap", "max/mean"]
    assert "eplb eplb" not in svg.read_text() and "balancedness eplb " in svg.read_text()
    assert main(["balance", loads, "--replicas", "12", "--gpus", "4", "--policy", "eplb",
                 "--previous", str(placement)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["layer", "no-redund", "eplb", "eplb*"]
    assert any(line.startswith("eplb*: DeepSeek's plan keeping") for line in lines)


def test_balance_picture_draws_every_layer_on_one_scale(tmp_path, capsys):
    import re

    svg = tmp_path / "p.svg"
    assert main(["balance", str(GOLDEN / "good.csv"), "--replicas", "12", "--gpus", "4",
                 "--svg", str(svg)]) == 0
    text = svg.read_text()
    bars = re.findall(r'height="([\d.]+)" fill="#[0-9a-f]+"><title>layer (\d+), GPU \d+, [^:]+: ([\d.e+-]+)</title>',
                      text)
    ratios = [float(h) / float(v) for h, _layer, v in bars if float(h) > 5]  # pixels per token
    assert {layer for _h, layer, _v in bars} == {"0", "1"} and max(ratios) / min(ratios) < 1.01  # one scale
    ticks = re.findall(r'class="tick">([\d.]+)</text>', text)
    assert ticks.count(ticks[0]) == 2  # the top of the scale, labelled on each layer's panel
