"""Loads files: every format gives the same [layers, experts] array."""

import json

import numpy as np
import pytest

from schedc.experts.loads import parse_csv, read_loads, read_placement
from schedc.errors import SchedError

W = np.array([[10, 0, 3.5, 7], [1, 2, 3, 4]])


def test_every_format_reads_the_same_loads(tmp_path):
    (tmp_path / "w.csv").write_text("# a comment\n10, 0, 3.5, 7\n\n1,2,3,4\n")
    np.save(tmp_path / "w.npy", W)
    (tmp_path / "w.json").write_text(json.dumps(W.tolist()))
    (tmp_path / "d.json").write_text(json.dumps({"loads": W.tolist()}))
    for name in ("w.csv", "w.npy", "w.json", "d.json"):
        assert read_loads(str(tmp_path / name)).tolist() == W.tolist(), name


def test_torch_files_read_tensors_and_dicts(tmp_path):
    torch = pytest.importorskip("torch", reason=".pt files need torch")
    torch.save(torch.tensor(W), tmp_path / "w.pt")
    torch.save({"weight": torch.tensor(W)}, tmp_path / "d.pt")
    assert read_loads(str(tmp_path / "w.pt")).tolist() == W.tolist()
    assert read_loads(str(tmp_path / "d.pt")).tolist() == W.tolist()


def test_one_row_is_one_layer_and_placements_read_phy2log(tmp_path):
    (tmp_path / "one.json").write_text("[1, 2, 3]")
    assert read_loads(str(tmp_path / "one.json")).shape == (1, 3)
    (tmp_path / "p.json").write_text(json.dumps({"version": 1, "phy2log": [[0, 1, 1, 2]]}))
    assert read_placement(str(tmp_path / "p.json")).tolist() == [[0, 1, 1, 2]]


def test_bad_values_in_arrays_are_named(tmp_path):
    np.save(tmp_path / "bad.npy", np.array([[1.0, -2.0]]))
    with pytest.raises(SchedError, match=r"layer 0, expert 1: -2.0"):
        read_loads(str(tmp_path / "bad.npy"))
    with pytest.raises(SchedError) as info:
        parse_csv("1,2\n3,x\n", "l.csv")
    assert info.value.diagnostics[0].span.line == 2 and info.value.diagnostics[0].span.col == 3
