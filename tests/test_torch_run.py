"""`schedc run` as a user meets it: a step trains, --check fails on NaN and on parameters that
differ, bad arguments and plans are refused before anything starts."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # the torch backend: slow; skip locally with -m 'not torchrun'

from test_torch_backend import MLP, ROOT, launch, sched  # noqa: E402


def model_file(tmp_path, name, extra):
    path = tmp_path / f"{name}.py"
    path.write_text(Path(MLP).read_text() + extra)
    return str(path)


def test_check_fails_on_a_nan_loss_and_says_where(tmp_path):
    model = model_file(tmp_path, "nan", """
def loss_fn(output, target):
    return torch.nn.functional.mse_loss(output, target, reduction="sum") * float("nan")
""")
    codes, outputs, _ = launch([sched(tmp_path, "1f1b", 2, 2)] * 2, model=model, extra=("--check",))
    assert codes == [1, 1], outputs
    assert "rank 1, loss of microbatch 0 is nan in the pipelined run" in outputs[1]
    assert "loss of microbatch 0 is nan in the single-process run" in outputs[1]
    assert "FAIL" in outputs[0] and "PASS" not in outputs[0]


def test_a_step_runs_the_optimizer_and_check_compares_the_parameters(tmp_path):
    # an optimizer whose rate depends on how many parameters it holds: a rank (one stage) steps
    # differently from the single-process run (every stage), so only the parameters differ
    model = model_file(tmp_path, "optim", """
def make_optimizer(parameters):
    return torch.optim.SGD(parameters, lr=0.01 * len(parameters))
""")
    codes, outputs, _ = launch([sched(tmp_path, "1f1b", 2, 2)] * 2, model=model, extra=("--check",))
    assert codes == [1, 1], outputs
    assert "after 1 training step(s) (losses, gradients, parameters)" in outputs[0] and "FAIL" in outputs[0]


@pytest.mark.parametrize("option,value", [("--steps", "0"), ("--steps", "-2"), ("--timeout", "0"),
                                          ("--lr", "-1"), ("--nproc", "0")])
def test_bad_arguments_are_refused_before_launching(option, value, capsys):
    from schedc.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(ROOT / "examples" / "manual.sched"), "--model", MLP, option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {option}: expected a" in err and "torch.distributed.run" not in err


@pytest.mark.parametrize("argv", [["run", "examples/manual.sched", "--model", MLP],
                                  ["run", "examples/manual.sched", "--model", MLP, "--profile"],
                                  ["audit-torch"]])
def test_commands_that_need_torch_say_so_without_it(argv):
    hide_torch = ("import sys; sys.modules['torch'] = None; from schedc.cli import main; "
                  f"sys.exit(main({argv!r}))")
    result = subprocess.run([sys.executable, "-c", hide_torch], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "this command needs torch: pip install 'schedc[torch]'" in result.stderr


def test_audit_shows_where_pytorchs_1f1b_departs_from_schedcs():
    from schedc.interop.torch_audit import audit
    from schedc.lang.spec import StageCost
    [row] = [r for r in audit(4, 8, StageCost()) if r["torch"] == "1F1B"]
    if not row["torch_result"].get("problem"):
        pytest.skip("this torch's 1F1B verifies")
    assert row["first_difference"].startswith("rank 3, step 0: torch F3.1, schedc F3.0")


def test_a_plan_that_does_not_verify_starts_nothing(tmp_path, capsys):
    from schedc.cli import main
    deadlock = tmp_path / "deadlock.sched"
    deadlock.write_text("pipeline d { ranks = 2 microbatches = 1 order {\n"
                        "  rank 0: B0.0 F0.0\n  rank 1: F1.0 B1.0\n} }\n")
    assert main(["run", str(deadlock), "--model", MLP]) == 1
    err = capsys.readouterr().err
    assert "deadlock.sched:2:" in err and "torch.distributed.run" not in err


def test_ranks_with_different_rank_counts_say_they_hold_different_plans(tmp_path):
    a = sched(tmp_path, "1f1b", 2, 4, "a.sched")
    b = sched(tmp_path, "1f1b", 3, 4, "b.sched")
    codes, outputs, _ = launch([a, b], extra=("--timeout", "20"))
    assert codes == [1, 1], outputs
    assert all("the ranks hold different plans" in out and "Traceback" not in out for out in outputs)


def test_a_hung_rank_is_named_by_its_peers_and_its_watchdog_ends_it(tmp_path):
    from test_torch_backend import model_with_broken_stage
    model = model_with_broken_stage(tmp_path, "hung", 1, 1, "import time; time.sleep(600)")
    codes, outputs, seconds = launch([sched(tmp_path, "1f1b", 2, 2)] * 2, model=model, extra=("--timeout", "4"))
    assert codes == [1, 1], outputs
    assert "rank 1 has been in F1.0 for" in outputs[0]
    assert "rank 1 has been in F1.0 for" in outputs[1] and "giving up" in outputs[1]
    assert seconds < 60


def test_two_launchers_with_nnodes_2_run_one_pipeline(tmp_path):
    from test_torch_backend import free_port
    path = sched(tmp_path, "1f1b", 2, 4)
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-W", "ignore", "-m", "schedc", "run", str(path), "--model", MLP,
                               "--check", "--nnodes", "2", "--node-rank", str(node), "--rdzv-endpoint", endpoint],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for node in range(2)]
    results = [node.communicate(timeout=180) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], results
    assert "--nnodes=2 --node-rank=0" in results[0][1] and "PASS" in results[0][0]


@pytest.mark.parametrize("argv,message", [
    (["--nnodes", "2"], "--nnodes > 1 needs --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "node ranks are 0..1"),
    (["--nnodes", "3", "--rdzv-endpoint", "h:1"], "3 node(s) x 0 process(es), but the pipeline has ranks = 2")])
def test_multi_node_options_are_checked_before_launching(argv, message, capsys):
    from schedc.cli import main
    assert main(["run", str(ROOT / "examples" / "manual.sched"), "--model", MLP, *argv]) == 2
    assert message in capsys.readouterr().err


def test_ranks_start_from_the_installed_package_not_the_checkout(tmp_path):
    """A non-editable install run from the repository root: the checkout's schedc/ (which has no
    backends/) must not shadow the installed package in the ranks."""
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    if install.returncode:
        pytest.skip(f"pip could not install the package here: {install.stderr[-500:]}")
    import os
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([str(target / "bin" / "schedc"), "run", "examples/manual.sched", "--model", MLP,
                             "--check"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PASS" in result.stdout and "--no-python" in result.stderr


@pytest.mark.parametrize("profile", [[], ["--profile"]])
def test_two_streams_are_refused_on_cpu_before_anything_runs(profile, capsys):
    from schedc.cli import main
    argv = ["run", str(ROOT / "examples" / "manual.sched"), "--model", MLP, "--device", "cpu", "--overlap", "streams"]
    assert main(argv + profile) == 2
    assert "--overlap streams needs CUDA" in capsys.readouterr().err


@pytest.mark.parametrize("source,error", [("def build_stages(n:\n", "SyntaxError"),
                                          ("def build_stages(n):\n    raise ValueError('mine is broken')\n"
                                           "def loss_fn(a, b): pass\ndef make_batch(m, s=0): pass\n",
                                           "ValueError: mine is broken")])
def test_a_model_file_that_fails_is_reported_once_before_anything_starts(source, error, tmp_path, capsys):
    from schedc.cli import main
    model = tmp_path / "model.py"
    model.write_text(source)
    assert main(["run", str(ROOT / "examples" / "manual.sched"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1 and error in err
    assert "failed (its traceback is above); nothing was started" in err and "torch.distributed.run" not in err


def test_ctrl_c_stops_every_rank_without_a_traceback(tmp_path):
    """The terminal's Ctrl-C reaches the launcher, torchrun and every rank (one process group):
    exit 130, one line, no traceback, and no rank left behind."""
    import os
    import signal
    import time

    path = sched(tmp_path, "1f1b", 2, 4)
    process = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "schedc", "run", str(path), "--model", MLP,
                                "--steps", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    time.sleep(12)  # the ranks are training
    os.killpg(process.pid, signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "every rank was stopped" in err
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the group is left


@pytest.mark.parametrize("after", [3.0, 6.0])
def test_ctrl_c_during_a_profile_stops_it_without_a_traceback(tmp_path, after):
    """Ctrl-C while `--profile` times the stages (its helper processes still importing, or
    computing beside it): exit 130, no traceback from the profile or from any helper, nothing of
    the group left behind. (After the timing, the calibration run is a torchrun: the test above.)"""
    import os
    import signal
    import time

    path = sched(tmp_path, "1f1b", 4, 8)
    process = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "schedc", "run", str(path), "--model", MLP,
                                "--profile", "--repeats", "100000"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(after)
    os.killpg(process.pid, signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "schedc: interrupted" in err
    deadline = time.monotonic() + 15  # daemon helpers end with the profile; the init process reaps them
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the group is left


def test_a_reference_run_slower_than_the_timeout_still_meets_its_peers(tmp_path):
    """--check's single-process run has no collective: on a loaded machine one process may finish
    it long after another, and the verdicts' all-reduce must not time out on that (a clean-clone
    CI run did, at ranks 2 x EP 2 on 2 cores). Rank 1's reference run here lasts 5 s longer than
    rank 0's, past --timeout; a peer may take --timeout plus four times the process's own time."""
    model = model_file(tmp_path, "slow_reference", """
import os, time
_trained = []
_build = build_stages
def build_stages(num_stages):
    if _trained:  # stages built after a stage ran: the reference run's
        time.sleep(7 if os.environ["RANK"] == "1" else 2)
    stages = _build(num_stages)
    for stage in stages:
        stage.register_forward_pre_hook(lambda *_: _trained.append(True))
    return stages
""")
    codes, outputs, _ = launch([sched(tmp_path, "1f1b", 2, 2)] * 2, model=model, extra=("--check", "--timeout", "4"))
    assert codes == [0, 0], outputs
    assert "PASS" in outputs[0]
