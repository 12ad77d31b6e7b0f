"""The command line, end to end on the bundled examples."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schedc.cli import main

ROOT = Path(__file__).parent.parent
DUALPIPE = str(ROOT / "examples" / "dualpipe.sched")


def test_compile_prints_one_line_per_rank(capsys):
    assert main(["compile", DUALPIPE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"rank {r}" for r in range(8)]
    assert "F0.0&B" not in lines[0] and "&" in lines[0] and lines[0].endswith("GRAD_SUM@7")


def test_compile_json_to_a_file(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["compile", DUALPIPE, "--format", "json", "-o", str(out)]) == 0
    obj = json.loads(out.read_text())
    assert obj["version"] == 1 and len(obj["ranks"]) == 8
    assert obj["spec"]["schedule"] == "dualpipe"


def test_compile_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "p.sched"
    src.write_text(Path(DUALPIPE).read_text())
    assert main(["compile", str(src), "-o", str(src)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert src.read_text() == Path(DUALPIPE).read_text()


def test_compile_sched_format_recompiles_to_the_same_plan(tmp_path, capsys):
    out = tmp_path / "again.sched"
    assert main(["compile", DUALPIPE, "--format", "sched", "-o", str(out)]) == 0
    capsys.readouterr()
    main(["compile", DUALPIPE])
    first = capsys.readouterr().out
    main(["compile", str(out)])
    assert capsys.readouterr().out == first


def test_simulate_json_has_the_documented_keys(capsys):
    assert main(["simulate", DUALPIPE, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["makespan"] == 66 and obj["bubble_ratio"] == pytest.approx(48 / 528)
    assert obj["ranks"][0] == {"rank": 0, "busy": 60, "idle": 6, "peak_activations": 9}


def test_simulate_table(capsys):
    assert main(["simulate", DUALPIPE]) == 0
    out = capsys.readouterr().out
    assert "makespan      66" in out and "critical path" in out


def test_check_every_example(capsys):
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.sched"))
    assert main(["check", *examples]) == 0
    assert capsys.readouterr().out.count(": ok") == len(examples)


def test_compare_is_deepseeks_table_measured(capsys):
    assert main(["compare", DUALPIPE, "--schedules", "1f1b,zb-h1,zb-h2,zbv,dualpipe,dualpipev", "--json"]) == 0
    rows = {r["family"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["1f1b"]["bubble"] == rows["1f1b"]["closed_form"] == 7 * 3
    assert rows["zb-h1"]["bubble"] == 7
    assert rows["dualpipe"]["bubble"] == 6 and rows["dualpipe"]["parameter_copies"] == 2
    assert rows["dualpipe"]["peak_activations"] == 9


def test_compare_lists_families_that_do_not_fit(capsys):
    one_f_one_b = str(ROOT / "examples" / "1f1b.sched")
    assert main(["compare", one_f_one_b]) == 0
    out = capsys.readouterr().out
    assert "gpipe       skipped: gpipe needs 8 activations" in out


def test_dump_dag_and_order(capsys):
    manual = str(ROOT / "examples" / "manual.sched")
    assert main(["compile", manual, "--dump", "dag"]) == 0
    assert "F0.0 -> F1.0 (cross-rank)" in capsys.readouterr().out
    assert main(["compile", manual, "--dump", "order"]) == 0
    assert capsys.readouterr().out.startswith("rank 0: F0.0 F0.1 B0.0")


def test_missing_file_and_unknown_pipeline_are_usage_errors(capsys):
    assert main(["compile", "no/such.sched"]) == 2
    assert "cannot read 'no/such.sched'" in capsys.readouterr().err
    assert main(["compile", DUALPIPE, "--pipeline", "nope"]) == 2
    assert "no pipeline named 'nope'" in capsys.readouterr().err


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "schedc.cli", "check", DUALPIPE],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout


def test_grid_format_is_a_step_by_rank_table_of_compute_ops(capsys):
    assert main(["compile", str(ROOT / "examples" / "zb-h1.sched"), "--format", "grid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("|")[1].split()[:3] == ["0", "1", "2"]
    assert lines[1].startswith("rank 0 | F0.0 F0.1 F0.2 F0.3 I0.0 W0.0")
    assert "SEND" not in "".join(lines)


def test_an_existing_sched_output_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "mine.sched"
    out.write_text("# my notes\n")
    assert main(["compile", DUALPIPE, "--format", "sched", "-o", str(out)]) == 2
    assert "add --force" in capsys.readouterr().err and out.read_text() == "# my notes\n"
    assert main(["compile", DUALPIPE, "--format", "sched", "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("pipeline dualpipe_8x20")


def test_a_failed_run_ends_in_one_line_not_torchrun_s_traceback():
    import io

    from schedc.backends.torch.launch import filter_launcher_traceback
    rank_traceback = ["Traceback (most recent call last):\n", '  File "model.py", line 3\n',
                      "ModuleNotFoundError: No module named 'apex'\n"]
    lines = (["schedc: error: rank 1, instruction 1 (F1.0): boom\n"] + rank_traceback
             + ["Traceback (most recent call last):\n", '  File "run.py", line 9, in <module>\n',
                "    raise ChildFailedError(\n",
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n",
                "=====\n", "Root Cause (first observed failure):\n"])
    out = io.StringIO()
    assert filter_launcher_traceback(iter(lines), out) is True
    assert out.getvalue() == "".join(lines[:1] + rank_traceback)
    out = io.StringIO()
    assert filter_launcher_traceback(iter(lines[:4]), out) is False
    assert out.getvalue() == "".join(lines[:4])
