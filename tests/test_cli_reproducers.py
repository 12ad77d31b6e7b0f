"""The rough edges of issue 24, section 4, each with its reproducer: windows and lists that name
nothing, what `schedule = auto` and `placement = any` chose, partition's checks before its work."""

import json
import re
from pathlib import Path

import pytest

from schedc.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
AUTO = """pipeline a {
  ranks = 8
  microbatches = 64
  schedule = SCHEDULE
  split_backward = true
  overlap = true
  cost { F = 1  B = 2  W = 1  F&B = 2.5  comm = 0.1 }
  memory { activation = 1 }
}
"""


@pytest.mark.parametrize("window,message", [
    (["--ranks", "5-2"], "--ranks 5-2: this pipeline has ranks 0 to 3"),
    (["--ranks", "2-1"], "--ranks 2-1: the range 2-1 runs backwards; write 1-2"),
    (["--ranks", "7-9"], "--ranks 7-9: this pipeline has ranks 0 to 3"),
    (["--microbatches", "0,8"], "--microbatches 0,8: this pipeline has microbatches 0 to 7"),
    (["--ranks", ","], "--ranks takes numbers and ranges like 0-3,7; got ','"),
])
def test_dag_window_outside_the_pipeline_is_a_usage_error(tmp_path, capsys, window, message):
    out = tmp_path / "d.dot"
    assert main(["dag", str(EXAMPLES / "1f1b.sched"), "-o", str(out), *window]) == 2
    assert capsys.readouterr().err == f"schedc: error: {message}\n" and not out.exists()


@pytest.mark.parametrize("argv", [["compare", "FILE", "--schedules", ","],
                                  ["viz", "FILE", "--compare", ",", "-o", "OUT"]])
def test_a_list_of_families_naming_none_is_a_usage_error(tmp_path, capsys, argv):
    args = [str(EXAMPLES / "1f1b.sched") if a == "FILE" else str(tmp_path / "c.svg") if a == "OUT" else a
            for a in argv]
    assert main(args) == 2
    out = capsys.readouterr()
    flag = argv[2]
    assert out.out == "" and out.err.startswith(f"schedc: error: {flag} ',' names no schedule; give ")


def simulate_text(tmp_path, capsys, text: str) -> str:
    path = tmp_path / "p.sched"
    path.write_text(text)
    assert main(["simulate", str(path)]) == 0
    return capsys.readouterr().out


def test_auto_says_when_the_search_improved_the_family_s_plan(tmp_path, capsys):
    from schedc.cli.plans import found_by_lines
    from schedc.compiler import compile_spec
    from schedc.lang.spec import check_program
    from schedc.lang.syntax import parse_program
    from schedc.simulate import simulate
    from types import SimpleNamespace

    family = simulate_text(tmp_path, capsys, AUTO.replace("SCHEDULE", "dualpipe"))
    assert "makespan      175.5" in family
    [spec] = check_program(parse_program(AUTO.replace("SCHEDULE", "auto"), "a.sched"))
    compiled = compile_spec(spec)
    makespan = simulate(compiled.spec, compiled.dag, compiled.plan).makespan
    assert makespan < 175.5 and compiled.spec.placement == "bidirectional"
    seeded = SimpleNamespace(found_by="the dualpipe family", evaluations=39, seconds=0.4)
    [line] = found_by_lines(SimpleNamespace(spec=compiled.spec, search=seeded), makespan)
    assert line == (f"found by      the dualpipe family, improved by the search from 175.5 to "
                    f"{makespan:g} (39 list schedules, 0.4 s)")
    [line] = found_by_lines(SimpleNamespace(spec=compiled.spec, search=seeded), 175.5)
    assert line == "found by      the dualpipe family (39 list schedules, 0.4 s)"  # not improved: no claim


def test_auto_text_names_the_search_and_its_improvement(tmp_path, capsys):
    out = simulate_text(tmp_path, capsys, AUTO.replace("SCHEDULE", "auto"))
    assert out.startswith("pipeline a: search (chosen by schedule = auto), 8 ranks")
    found = re.search(r"found by +(.*)", out)[1]
    makespan = float(re.search(r"makespan +([\d.]+)", out)[1])
    if found.startswith("the dualpipe family"):  # the search's own wording for its seed
        assert f"improved by the search from 175.5 to {makespan:g}" in found


def test_placement_any_says_which_placement_won(tmp_path, capsys):
    text = AUTO.replace("SCHEDULE", "search\n  placement = any\n  search_time = 0.2")
    out = simulate_text(tmp_path, capsys, text)
    won = re.search(r"^placement +(\S+) \(placement = any: the best of linear, interleaved, v, "
                    r"bidirectional\)$", out, re.M)
    assert won
    assert main(["simulate", str(tmp_path / "p.sched"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["placement"] == won[1]


@pytest.mark.parametrize("viz,message", [("x.jpg", "a timeline cannot be written as 'jpg'"),
                                         ("no/x.svg", "the folder '{tmp}/no' does not exist")])
def test_partition_checks_its_picture_before_the_work_and_the_report(tmp_path, capsys, viz, message):
    assert main(["partition", str(EXAMPLES / "partition" / "llama.json"), "--ranks", "4",
                 "--microbatches", "8", "--viz", str(tmp_path / viz)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and message.format(tmp=tmp_path) in out.err


@pytest.mark.parametrize("source", ["llama.sched", "llama.json"])
def test_partition_min_layers_too_large_names_the_flag(capsys, source):
    sizes = [] if source.endswith(".sched") else ["--ranks", "4", "--microbatches", "8"]
    assert main(["partition", str(EXAMPLES / "partition" / source), *sizes, "--min-layers", "10"]) == 2
    err = capsys.readouterr().err
    stages = 8 if source.endswith(".sched") else 4
    assert err == (f"schedc: error: --min-layers 10: {stages} stages x 10 layers is {stages * 10}, but "
                   f"the model has 34 layers; --min-layers {34 // stages} or less fits\n")
