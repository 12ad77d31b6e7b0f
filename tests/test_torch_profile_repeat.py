"""Numbers that repeat (issue 24, section 3): what keeps two `--profile`s alike and the block's
step on the run's. The timed ops use the thread's CPU time on one CPU thread (a time slice given
to another process is not the op's), no more companions than the cores hold, the calibration's
figures are interquartile means of every instance (one paused instance cannot move them), and the
block's comm is fitted to the calibration run's whole step (`profile/fit.py`)."""

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import schedc  # noqa: E402
from schedc.backends.torch.profile import driver  # noqa: E402
from schedc.backends.torch.profile.calibrate import calibrated_rows, run_durations  # noqa: E402
from schedc.backends.torch.profile.fit import fit_comm, format_fit  # noqa: E402
from schedc.backends.torch.profile.stage_times import op_clock, time_op  # noqa: E402

from test_torch_profile_calibrate import trace_of  # noqa: E402

ONE_F_ONE_B = "pipeline p { ranks = 4 microbatches = 8 schedule = 1f1b cost { F = 1 B = 2 comm = 0.1 } }"


def compiled(text: str = ONE_F_ONE_B):
    [spec] = schedc.parse(text, "p.sched")
    return schedc.compile(spec)


def test_fit_comm_makes_the_simulated_step_the_measured_one():
    plan = compiled()
    unfitted = schedc.simulate(plan).makespan
    fit = fit_comm(plan, 1.5 * unfitted)
    assert fit.unfitted_ms == pytest.approx(unfitted) and fit.extra > 0
    assert fit.fitted_ms == pytest.approx(1.5 * unfitted, rel=1e-6)
    assert fit.comm(0.1) == pytest.approx(0.1 + fit.extra)
    assert "comm fitted to the calibration run's step" in format_fit(fit)


def test_fit_comm_lowers_comm_but_never_below_zero():
    plan = compiled()
    without_comm = schedc.simulate(compiled(ONE_F_ONE_B.replace("comm = 0.1", "comm = 0"))).makespan
    fit = fit_comm(plan, 0.5 * without_comm)  # faster than any comm allows: every comm at 0
    assert fit.comm(0.1) == 0.0 and fit.fitted_ms == pytest.approx(without_comm)
    between = (without_comm + schedc.simulate(plan).makespan) / 2
    fit = fit_comm(plan, between)
    assert -0.1 < fit.extra < 0 and fit.fitted_ms == pytest.approx(between, rel=1e-6)


def test_fit_comm_leaves_a_pipeline_without_transfers_alone():
    plan = compiled("pipeline p { ranks = 1 microbatches = 4 schedule = 1f1b }")
    fit = fit_comm(plan, 100.0)
    assert fit.extra == 0.0 and fit.fitted_ms == fit.unfitted_ms


def test_a_run_gives_its_step_as_the_fit_reads_it():
    plan = compiled()
    run = run_durations(trace_of(plan.spec, steps=4))
    assert len(run.step_ms) == 3  # the warm-up step is not counted
    assert run.typical_step() == pytest.approx(schedc.simulate(plan).makespan)


def test_one_paused_instance_does_not_move_a_calibrated_figure():
    [spec] = schedc.parse("pipeline p { ranks = 2 microbatches = 8 schedule = 1f1b cost { F = 2 B = 4 W = 2 } }",
                          "p.sched")
    trace = trace_of(spec, steps=3)
    forwards = [e for e in trace["traceEvents"] if e.get("cat") == "F" and e["args"]["step"] == 1]
    forwards[0]["dur"] *= 10  # the OS gave the core away for a time slice
    profile = [{"stage": s, "F": 1.0, "B": 2.0, "W": 1.0, "F&B": 3.0, "comm": 0.0} for s in range(2)]
    rows = calibrated_rows(profile, run_durations(trace))
    assert [r["F"] for r in rows] == pytest.approx([2.0, 2.0])


def test_a_cpu_op_on_one_thread_is_timed_by_its_own_cpu_time():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert op_clock(torch.device("cpu")) is time.thread_time
        waited = time_op(lambda: (), lambda: time.sleep(0.01), torch.device("cpu"), warmup=0, repeats=4)
        assert waited.ms < 5  # sleeping (as when another process has the core) is not the op's time
    finally:
        torch.set_num_threads(threads)
    if threads > 1:
        assert op_clock(torch.device("cpu")) is time.perf_counter


@pytest.mark.parametrize("ranks,cores,expected", [(4, 2, 1), (2, 2, 1), (4, 8, 3), (1, 2, 0), (4, 1, 0)])
def test_companions_never_outnumber_the_cores(monkeypatch, ranks, cores, expected):
    monkeypatch.setattr(driver, "host_cores", lambda: cores)
    assert driver.companion_count(ranks, threads=1) == expected


def test_the_benchmark_reads_two_profiles_and_a_run(tmp_path):
    """benchmarks/profile_repeat.py's figures from two written files (its schedc runs left out)."""
    import importlib.util
    path = Path(__file__).parent.parent / "benchmarks" / "profile_repeat.py"
    spec = importlib.util.spec_from_file_location("profile_repeat", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name, f in (("a", 1), ("b", 1.2)):
        (tmp_path / f"{name}.sched").write_text(ONE_F_ONE_B.replace("F = 1", f"F = {f}"))
    a, b = bench.block_figures(tmp_path / "a.sched"), bench.block_figures(tmp_path / "b.sched")
    result = {"runs": [{"seconds": 1, "load": "0", "speed": 1.0, "calibration": 10.0}] * 2, "A": a, "B": b,
              "speed": 1.0,
              "ratios": [{k: max(x[k], y[k]) / min(x[k], y[k]) for k in x} for x, y in zip(a, b)],
              "measured": 10.0, "predicted": [bench.predicted_step(tmp_path / "a.sched"),
                                              bench.predicted_step(tmp_path / "b.sched")]}
    text = bench.report(result)
    assert "figures within 1.30x: 12 of 12; worst ratio 1.200" in text and "with that level taken out" in text
    assert "measured / predicted" in text


@pytest.mark.torchrun
@pytest.mark.parametrize("cores", [1, 64])
def test_more_ranks_than_cores_keeps_the_profiled_figures_and_fits_comm(tmp_path, monkeypatch, capsys, cores):
    """Crowded (2 ranks on 1 core): the block's F, B are the profile's (the probe's sends left out:
    --bandwidth), not the run's; otherwise the run's. Either way comm is fitted to the run's step."""
    from schedc.cli import main
    source = tmp_path / "p.sched"
    source.write_text("pipeline p { ranks = 2 microbatches = 4 schedule = 1f1b }\n")
    [spec] = schedc.load(source)
    truth = ONE_F_ONE_B.replace("ranks = 4", "ranks = 2").replace("F = 1 B = 2", "F = 7 B = 9")
    [slow] = schedc.parse(truth, "slow.sched")
    fake = run_durations(trace_of(slow, steps=3))  # a run whose ops last 7 and 9 ms
    monkeypatch.setattr(driver, "host_cores", lambda: cores)
    monkeypatch.setattr(driver, "calibration_run", lambda spec, args, block: (fake, schedc.compile(spec)))
    argv = ["run", str(source), "--model", str(Path(__file__).parent.parent / "examples" / "models" / "mlp.py"),
            "--profile", "--repeats", "4", "--bandwidth", "10", "--profile-alone", "--profile-out",
            str(tmp_path / "out.sched")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert ("more ranks (2 processes) than cores (1)" in printed) is (cores == 1)
    [profiled] = schedc.load(tmp_path / "out.sched")
    forwards = [c.forward for c in profiled.costs]
    assert all(f < 5 for f in forwards) if cores == 1 else forwards == pytest.approx([7, 7], rel=1e-3)
    compiled_profile = schedc.compile(profiled)
    assert schedc.simulate(compiled_profile).makespan == pytest.approx(fake.typical_step(), rel=2e-3)
