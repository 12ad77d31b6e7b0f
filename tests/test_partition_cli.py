"""`schedc partition` and `stages = auto` end to end through the command line: the public case,
the JSON output, re-balancing, compiling a layered file, and located errors (golden files)."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedc
from schedc.cli import main
from schedc.errors import SchedError, SourceFile, render_error

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_JSON = ROOT / "examples" / "partition" / "llama.json"
EXAMPLE_SCHED = ROOT / "examples" / "partition" / "llama.sched"
GOLDEN = Path(__file__).parent / "golden" / "partition"
CASES = sorted(p.stem for p in GOLDEN.glob("*.sched"))


def _json(capsys, *argv):
    assert main(["partition", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_public_case_json(capsys):
    out = _json(capsys, str(EXAMPLE_JSON), "--ranks", "8", "--microbatches", "16", "--schedule", "1f1b")
    assert out["layout"] == "Et*2|(t*5|)*6L"
    assert out["bottleneck"] == 15  # slowest stage 5 in F, with B = 2F
    assert out["makespan"] == out["lower_bound"] == (16 + 8 - 1) * 15
    assert out["exact"]
    assert out["stages"][0] == ["embed", "layers.0", "layers.1"] and out["stages"][-1] == ["head"]
    assert len(out["peak_memory"]) == 8
    anchors = {a["name"]: a for a in out["anchors"]}
    assert anchors["uniform (Megatron default)"]["bottleneck"] == 27
    assert anchors["Megatron first/last flags"]["bottleneck"] == 18
    assert anchors["torchtitan defaults"]["bottleneck"] == 24
    assert all(a["makespan"] >= out["makespan"] for a in out["anchors"] if "makespan" in a)


def test_speeds_and_limit(capsys):
    out = _json(capsys, str(EXAMPLE_JSON), "--ranks", "4", "--microbatches", "8", "--speeds", "2,2,1,1",
                "--limit", "120")
    sizes = [len(s) for s in out["stages"]]
    assert sizes[0] + sizes[1] > sizes[2] + sizes[3]  # the fast ranks hold more layers
    assert max(out["peak_memory"]) <= 120


def test_rebalance_after_losing_a_rank_says_what_moved(capsys):
    out = _json(capsys, str(EXAMPLE_JSON), "--ranks", "7", "--from-ranks", "8", "--microbatches", "14")
    assert len(out["stages"]) == 7
    assert out["moves"] and all(set(m) == {"layer", "from", "to"} for m in out["moves"])
    assert main(["partition", str(EXAMPLE_JSON), "--ranks", "7", "--from-ranks", "8",
                 "--microbatches", "14"]) == 0
    assert "layers move:" in capsys.readouterr().out


def test_layered_sched_file_compiles_with_the_chosen_split(capsys):
    [spec] = schedc.load(EXAMPLE_SCHED)
    assert spec.layers.bounds is not None
    out = _json(capsys, str(EXAMPLE_SCHED))
    sizes = [b - a for a, b in zip(spec.layers.bounds, spec.layers.bounds[1:])]
    assert sizes == [len(s) for s in out["stages"]]
    assert schedc.simulate(schedc.compile(spec)).makespan == out["makespan"]
    assert main(["check", str(EXAMPLE_SCHED)]) == 0
    assert main(["compare", str(EXAMPLE_SCHED), "--schedules", "1f1b,zb-h1"]) == 0


def test_bad_speed_on_the_command_line(capsys):
    assert main(["partition", str(EXAMPLE_JSON), "--ranks", "2", "--microbatches", "4",
                 "--speeds", "1,0"]) == 2
    assert "a speed must be a finite number > 0, got 0 for rank 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", CASES)
def test_error_golden(name, capsys, update_goldens):
    cwd = os.getcwd()
    os.chdir(GOLDEN)
    try:
        status = main(["check", f"{name}.sched"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    expected = GOLDEN / f"{name}.out"
    if update_goldens or not expected.exists():
        expected.write_text(err)
    assert err == expected.read_text()
    assert err.startswith(f"{name}.sched:")


def test_fewer_layers_than_stages_in_a_json_file_is_located(capsys):
    cwd = os.getcwd()
    os.chdir(GOLDEN / "cli")
    try:
        status = main(["partition", "two_layers.json", "--ranks", "4", "--microbatches", "8"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("two_layers.json:1:1: error: 2 layers cannot fill 4 stages")


LAYERED = ROOT / "examples" / "partition" / "mlp_layers.sched"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_layered_files_give_located_errors(data):
    """A layered file with a few characters changed parses, partitions and compiles, or says
    where it is wrong; nothing else escapes."""
    text = LAYERED.read_text()
    start = data.draw(st.integers(0, len(text)))
    insert = data.draw(st.text(alphabet="layersdevicestagespeedlimitauto{}=*#_.\n 0123456789FBW", max_size=6))
    mutated = text[:start] + insert + text[start + data.draw(st.integers(0, 8)):]
    try:
        for spec in schedc.parse(mutated, "fuzz.sched"):
            if spec.ranks * spec.microbatches <= 64:
                schedc.compile(spec)
    except SchedError as error:
        assert "error:" in render_error(error, SourceFile("fuzz.sched", mutated))
