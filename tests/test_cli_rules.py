"""One rule for every command (issue 24, section 4): exit 0 when fine, 1 for a problem in the input
(a located error, a failed check), 2 for a usage or I/O error, each message starting
`schedc: error:` (or a located error's `file:line:col: error:`); Ctrl-C is one line and 130."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedc.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
BALANCE = Path(__file__).parent / "golden" / "balance"
BAD_SCHED = "pipeline p {\n  ranks = 0\n  microbatches = 2\n}\n"
BAD_CSV = "0F0,0B0\n0F1,0X1\n"
MLP = str(EXAMPLES / "models" / "mlp.py")

# command -> (arguments with FILE for the input, a good input, a bad input); OUT is a file in tmp_path
COMMANDS = {
    "compile": (["compile", "FILE"], "1f1b.sched", "bad.sched"),
    "check": (["check", "FILE"], "1f1b.sched", "bad.sched"),
    "simulate": (["simulate", "FILE"], "1f1b.sched", "bad.sched"),
    "compare": (["compare", "FILE", "--schedules", "1f1b,zb-h1"], "1f1b.sched", "bad.sched"),
    "viz": (["viz", "FILE", "-o", "OUT.svg"], "1f1b.sched", "bad.sched"),
    "trace": (["trace", "FILE", "-o", "OUT.json"], "1f1b.sched", "bad.sched"),
    "dag": (["dag", "FILE", "-o", "OUT.dot"], "1f1b.sched", "bad.sched"),
    "export": (["export", "FILE", "-o", "OUT.csv"], "1f1b.sched", "bad.sched"),
    "import": (["import", "FILE", "--placement", "loop"], "good.csv", "bad.csv"),
    "audit-torch": (["audit-torch", "--costs", "FILE"], None, None),
    "run": (["run", "FILE", "--model", MLP], None, "bad.sched"),
    "balance": (["balance", "FILE", "--replicas", "8", "--gpus", "4"], "loads.csv", "bad_cell.csv"),
    "partition": (["partition", "FILE"], "mlp_layers.sched", "bad.sched"),
    "overlap": (["overlap", "FILE"], "moe_chunk.sched", "bad.sched"),
}


@pytest.fixture
def inputs(tmp_path, capsys):
    """The inputs the table names, in tmp_path."""
    (tmp_path / "bad.sched").write_text(BAD_SCHED)
    (tmp_path / "bad.csv").write_text(BAD_CSV)
    for name in ("1f1b.sched", "moe_chunk.sched"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    (tmp_path / "mlp_layers.sched").write_text((EXAMPLES / "partition" / "mlp_layers.sched").read_text())
    (tmp_path / "loads.csv").write_text((BALANCE / "good.csv").read_text())
    (tmp_path / "bad_cell.csv").write_text((BALANCE / "bad_cell.csv").read_text())
    assert main(["export", str(tmp_path / "1f1b.sched"), "-o", str(tmp_path / "good.csv")]) == 0
    capsys.readouterr()
    return tmp_path


def argv_for(command: str, file: str, folder: Path) -> list[str]:
    args = COMMANDS[command][0]
    return [str(folder / file) if a == "FILE" else str(folder / a) if a.startswith("OUT") else a
            for a in args]


@pytest.mark.parametrize("kind", ["fine", "input", "usage"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_follows_the_exit_code_rule(command, kind, inputs, capsys):
    _args, good, bad = COMMANDS[command]
    if command == "audit-torch":  # no input file: its usage error is a bad --costs
        if kind != "usage":
            pytest.skip("audit-torch reads no file; a fine run takes torch and seconds")
        argv = ["audit-torch", "--costs", "1,2"]
    else:
        file = {"fine": good, "input": bad, "usage": "no_such_file.sched"}[kind]
        if file is None:
            pytest.skip(f"a fine `{command}` starts torchrun")
        argv = argv_for(command, file, inputs)
    status = main(argv)
    err = capsys.readouterr().err
    assert status == {"fine": 0, "input": 1, "usage": 2}[kind], err
    assert "Traceback" not in err
    if kind == "usage":
        assert err.startswith("schedc: error: ") and err.count("\n") == 1, err
    if kind == "input":
        assert ": error: " in err.splitlines()[0], err


@pytest.mark.parametrize("argv", [["balance", "loads.csv"], ["viz", "x.sched"],
                                  ["partition", "x.json", "--ranks", "0"], ["compile"]])
def test_argument_errors_exit_2_with_the_one_prefix(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("usage: schedc ")
    assert err.splitlines()[-1].startswith("schedc: error: ")


def test_check_help_states_the_exit_codes():
    text = subprocess.run([sys.executable, "-m", "schedc", "check", "--help"], capture_output=True,
                          text=True).stdout
    assert "0 when all are fine, 1 when one has errors" in " ".join(text.split())
    assert "2 when one cannot be read" in " ".join(text.split())


def test_check_json_reports_each_file_with_its_errors_placed(inputs, capsys):
    files = [str(inputs / f) for f in ("1f1b.sched", "bad.sched", "missing.sched")]
    assert main(["check", "--json", *files]) == 2
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert out.err == "" and report["status"] == 2
    ok, bad, missing = report["files"]
    assert ok["status"] == "ok" and ok["pipelines"] == ["one_f_one_b"] and ok["errors"] == []
    assert bad["status"] == "errors" and bad["errors"][0]["line"] == 2 and bad["errors"][0]["col"] == 11
    assert "ranks must be at least 1" in bad["errors"][0]["message"]
    assert missing["status"] == "unreadable" and "cannot read" in missing["errors"][0]["message"]
    assert main(["check", "--json", files[0]]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == 0


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from schedc.cli import plans

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(plans, "compile_spec", lambda spec: interrupted(None))
    assert main(["simulate", str(EXAMPLES / "1f1b.sched")]) == 130
    assert capsys.readouterr().err == "schedc: interrupted\n"


def test_ctrl_c_in_a_real_process_prints_no_traceback(tmp_path):
    """SIGINT delivered to a running command: one line, status 130."""
    script = tmp_path / "sigint.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "from schedc.cli import main, plans\n"
        "def slow(spec):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "plans.compile_spec = slow\n"
        f"sys.exit(main(['simulate', {str(EXAMPLES / '1f1b.sched')!r}]))\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert result.returncode == 130 and result.stderr == "schedc: interrupted\n"
