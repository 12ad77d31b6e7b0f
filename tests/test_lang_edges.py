"""The language's rough edges (issue 13, section 3): costs that stay consistent, numbers and sizes
that are bounded, carets on the right line, every error naming its file."""

import time
from pathlib import Path

import pytest

import schedc
from schedc.cli import main
from schedc.errors import SchedError, SourceFile, render_error
from schedc.lang.writer import format_pipeline


def parse_one(text: str):
    [spec] = schedc.parse(text, "t.sched")
    return spec


def error_of(text: str, file: str = "t.sched") -> str:
    with pytest.raises(SchedError) as info:
        for spec in schedc.parse(text, file):
            schedc.compile(spec)
    return render_error(info.value, SourceFile(file, text))


# ---- costs -----------------------------------------------------------------------------------

def test_stage_overriding_f_and_b_keeps_the_blocks_gain_not_its_pair_cost():
    spec = parse_one("pipeline p { ranks = 4 microbatches = 8 schedule = dualpipev "
                     "cost { F=1 B=2 W=1 F&B=2.6 stage 0, 3 { F=5 B=10 W=5 } } }")
    gain = 1 + 2 - 2.6
    assert spec.costs[1].overlap_cost == 2.6
    for stage in (0, 3):
        assert spec.costs[stage].overlap_cost == pytest.approx(5 + 10 - gain)
        cost = spec.costs[stage]
        assert max(cost.forward, cost.backward) <= cost.overlap_cost <= cost.forward + cost.backward


def test_derived_pair_cost_never_drops_below_its_longer_half():
    spec = parse_one("pipeline p { ranks = 2 microbatches = 4 cost { F=4 B=4 F&B=4 stage 1 { F=1 } } }")
    assert spec.costs[1].overlap_cost == 4  # F + B - gain = 1 + 4 - 4 = 1 < max(F, B)


@pytest.mark.parametrize("cost", [
    "F=1 B=2 F&B=1.5",  # below max(F, B)
    "F=1 B=2 F&B=3.5",  # above F + B
    "F=1 B=2 stage 1 { F=3 F&B=2 }",
])
def test_pair_cost_outside_its_range_is_a_located_error(cost):
    text = f"pipeline p {{ ranks = 2 microbatches = 4 cost {{ {cost} }} }}"
    message = error_of(text)
    col = text.index("F&B=") + len("F&B=") + 1
    assert message.startswith(f"t.sched:1:{col}: error:") and "must lie between max(F, B)" in message


def test_w_defaults_to_half_of_each_stages_b():
    spec = parse_one("pipeline p { ranks = 2 microbatches = 4 schedule = zb-h1 "
                     "cost { F = 0.25 B = 0.5 stage 1 { B = 3 } } }")
    assert [c.weight for c in spec.costs] == [0.25, 1.5]
    spec = parse_one("pipeline p { ranks = 2 microbatches = 4 }")
    assert spec.costs[0].weight == 1  # B = 2 by default: the old default W = 1 is kept


@pytest.mark.parametrize("family", ["zb-h1", "zb-h2", "zbv", "dualpipe", "dualpipev"])
def test_small_costs_without_w_compile_in_every_split_family(family):
    [spec] = schedc.parse(f"pipeline p {{ ranks = 4 microbatches = 8 schedule = {family} "
                          "cost { F = 0.25 B = 0.5 } }", "t.sched")
    schedc.compile(spec)


def test_written_pipeline_keeps_a_reshaped_stages_pair_cost():
    spec = parse_one("pipeline p { ranks = 2 microbatches = 4 schedule = dualpipev "
                     "cost { F=1 B=2 W=1 F&B=3 stage 1 { F=2 F&B=3 } } }")
    again = parse_one(format_pipeline(spec))
    assert again.costs == spec.costs


# ---- numbers and sizes -----------------------------------------------------------------------

HUGE = "9" * 4400
NUMBER_PLACES = {
    "rank line": f"pipeline p {{ ranks = 2 microbatches = 2 order {{ rank {HUGE}: F0.0 }} }}",
    "stage list": f"pipeline p {{ ranks = 2 microbatches = 2 cost {{ stage {HUGE} {{ F = 1 }} }} }}",
    "op token": f"pipeline p {{ ranks = 2 microbatches = 2 order {{ rank 0: F0.{HUGE} }} }}",
    "overlap": f"pipeline p {{ ranks = 2 microbatches = 2 order {{ rank 0: F0.0&B{HUGE}.0 }} }}",
    "peer": f"pipeline p {{ ranks = 2 microbatches = 2 order {{ rank 0: SEND_F0.0@{HUGE} }} }}",
    "setting": f"pipeline p {{ ranks = {HUGE} microbatches = 2 }}",
    "cost": f"pipeline p {{ ranks = 2 microbatches = 2 cost {{ F = {HUGE} }} }}",
}


@pytest.mark.parametrize("place", sorted(NUMBER_PLACES))
def test_numbers_of_thousands_of_digits_are_located_errors(place):
    message = error_of(NUMBER_PLACES[place])
    assert message.startswith("t.sched:1:") and "too large" in message
    assert len(message.splitlines()[0]) < 200  # the number is shortened in the message


def test_costs_near_the_float_limit_are_refused_before_they_overflow():
    text = "pipeline p { ranks = 2 microbatches = 4 cost { F = 1e308 B = 1e308 } }"
    message = error_of(text)
    assert message.startswith(f"t.sched:1:{text.index('1e308') + 1}: error: F = 1e308 is too large")


def test_largest_allowed_costs_simulate_to_finite_figures():
    [spec] = schedc.parse("pipeline p { ranks = 4 microbatches = 8 cost { F = 1e15 B = 1e15 W = 1e15 } }")
    timeline = schedc.simulate(schedc.compile(spec))
    assert timeline.makespan < float("inf") and timeline.bubble == timeline.bubble


# ---- carets, file names ----------------------------------------------------------------------

@pytest.mark.parametrize("odd", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\u2028", "\x85"])
def test_caret_points_at_the_parsers_line_whatever_breaks_str_splitlines(odd):
    text = f"pipeline p {{ # {odd} a comment\n  ranks = 2\n  microbatches = 2 !\n}}\n"
    message = error_of(text)
    first, shown, caret = message.splitlines()[:3]
    assert first.startswith("t.sched:3:20:")
    assert shown.strip() == "microbatches = 2 !" and caret.index("^") == shown.index("!")


def test_end_of_file_error_after_empty_lines_shows_a_caret_after_the_last_text():
    message = error_of("pipeline p {\n  ranks = 2\n\n\n")
    assert message.splitlines()[0].startswith("t.sched:2:12: error: unexpected end of file")
    assert message.splitlines()[2] == "    " + " " * 11 + "^"


def test_two_pipelines_with_one_name_are_refused_at_the_second():
    message = error_of("pipeline p { ranks = 2 microbatches = 2 }\npipeline p { ranks = 4 microbatches = 4 }")
    assert message.startswith("t.sched:2:10: error: a second pipeline named 'p'")
    assert "t.sched:1:10: note: the first one is here" in message


def test_check_goes_on_past_unreadable_files_and_names_every_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.sched").write_text("pipeline a { ranks = 2 microbatches = 2 }\n")
    (tmp_path / "b.sched").write_text("pipeline b { ranks = 2 microbatches = 2 }\n")
    (tmp_path / "empty.sched").write_text("# nothing here\n")
    (tmp_path / "latin1.sched").write_bytes(b"pipeline c { # caf\xe9\n ranks = 2 microbatches = 2 }\n")
    status = main(["check", "a.sched", "missing.sched", "empty.sched", "latin1.sched", "b.sched"])
    out = capsys.readouterr()
    assert status == 2
    assert out.out.splitlines() == ["a.sched: ok (1 pipeline)", "b.sched: ok (1 pipeline)"]
    assert "cannot read 'missing.sched': No such file or directory" in out.err
    assert "empty.sched:1:1: error: no pipeline in this file" in out.err
    assert "latin1.sched:1:19: error: this file is not UTF-8 text: byte 0xe9" in out.err


def test_check_status_is_one_when_files_read_but_fail(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.sched").write_text("pipeline p { ranks = 0 microbatches = 2 }\n")
    (tmp_path / "good.sched").write_text("pipeline p { ranks = 2 microbatches = 2 }\n")
    assert main(["check", "bad.sched", "good.sched"]) == 1
    assert "good.sched: ok" in capsys.readouterr().out


# ---- the PyTorch CSV reader shares the bounds --------------------------------------------------

CSV_GOLDEN = Path(__file__).parent / "golden" / "csv_errors"


@pytest.mark.parametrize("name", sorted(p.stem for p in CSV_GOLDEN.glob("*.csv")))
def test_csv_error_golden(name, capsys, monkeypatch, update_goldens):
    monkeypatch.chdir(CSV_GOLDEN)
    started = time.perf_counter()
    assert main(["import", f"{name}.csv", "--placement", "loop"]) == 1
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err
    expected = CSV_GOLDEN / f"{name}.out"
    if update_goldens or not expected.exists():
        expected.write_text(err)
    assert err == expected.read_text()
    assert err.startswith(f"{name}.csv:") and "^" in err


def test_the_op_budget_refuses_big_pipelines_in_well_under_a_second():
    schedc.parse("pipeline warm { ranks = 2 microbatches = 2 }")  # build the parser first
    started = time.perf_counter()
    message = error_of("pipeline p { ranks = 1000 microbatches = 1000 }")
    assert time.perf_counter() - started < 1
    assert "has 2,000,000 compute ops" in message and "takes up to 100,000" in message


def test_python_api_names_the_file_of_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin1.sched"
    path.write_bytes(b"pipeline p {\n  ranks = 2 # \xff\n  microbatches = 2\n}\n")
    with pytest.raises(SchedError) as info:
        schedc.load(path)
    assert str(info.value.diagnostics[0].span) == f"{path}:2:15"
