"""`schedc run --profile` times the runner's own compute: a model whose ops take known times gives
those times back; the first stage's I is empty; comm is measured between two processes; the cost
block goes into a copy of the file."""

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # the torch backend: slow; skip locally with -m 'not torchrun'

import schedc  # noqa: E402
from schedc.backends.torch.profile.costblock import cost_rows, format_cost_block  # noqa: E402
from schedc.backends.torch.profile.stage_times import Timing, profile_stages, sanity_warnings, time_op  # noqa: E402

ROOT = Path(__file__).parent.parent
MLP = str(ROOT / "examples" / "models" / "mlp.py")
FORWARD_S, BACKWARD_S = 0.004, 0.008  # what the slow stages compute for


def busy(seconds: float) -> None:
    """Compute (not sleep) for `seconds` of this thread's CPU time: on one CPU thread the profile
    times an op by its CPU time, and a loop spinning on the wall clock takes less CPU time than
    asked whenever the OS gives its core away meanwhile (the fastest samples then read under it)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class Sleep(torch.autograd.Function):
    """Identity whose forward and backward take known times."""

    @staticmethod
    def forward(ctx, x):
        busy(FORWARD_S)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        busy(BACKWARD_S)
        return grad


class SlowStage(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x):
        return Sleep.apply(self.linear(x))


class SlowModel:
    """A model file's three functions, as a namespace."""

    @staticmethod
    def build_stages(n):
        torch.manual_seed(0)
        return [SlowStage() for _ in range(n)]

    @staticmethod
    def loss_fn(out, target):
        return ((out - target) ** 2).sum()

    @staticmethod
    def make_batch(microbatches, step=0):
        g = torch.Generator().manual_seed(step)
        return ([torch.randn(4, 8, generator=g) for _ in range(microbatches)],
                [torch.randn(4, 8, generator=g) for _ in range(microbatches)])


def test_time_op_times_only_the_op_after_a_warm_up():
    calls = []
    timing = time_op(lambda: (busy(0.01), 0.002)[1:], lambda s: (calls.append(s), busy(s)),
                     torch.device("cpu"), warmup=3, repeats=5, max_repeats=5)
    assert len(calls) == 8 and timing.samples == 5  # 3 warm-ups, 5 timed
    assert 2 <= timing.ms < 8  # the setup's 10 ms are not in it
    assert timing.spread >= 0


def test_profile_gives_back_the_known_times_of_each_op():
    profiles = profile_stages(SlowModel, 2, torch.float64, repeats=4)
    first, second = (p.figures for p in profiles)
    for f in (first, second):
        assert 1e3 * FORWARD_S <= f["F"].ms < 1e3 * FORWARD_S + 15
        assert 1e3 * BACKWARD_S <= f["B"].ms < 1e3 * BACKWARD_S + 15
        # on cpu a pair runs its forward, then its backward
        assert f["F&B"].ms >= 1e3 * (FORWARD_S + BACKWARD_S)
    # the first stage has no input gradient: I is empty, W is the whole backward
    assert first["I"].ms == 0 and first["W"] == first["B"]
    # the second: I walks back through the sleep, W only does the linear's weight work
    assert second["I"].ms >= 1e3 * BACKWARD_S and 0 < second["W"].ms < second["B"].ms
    assert [p.chosen_way for p in profiles] == ["sequential", "sequential"]
    assert not [w for w in sanity_warnings(profiles) if "I is" in w or "W is not positive" in w]


def test_sanity_warnings_name_the_stage_and_the_block_stays_valid():
    from schedc.backends.torch.profile.stage_times import StageProfile
    t = lambda ms: Timing(ms, 0.0, 5)  # noqa: E731
    bad = StageProfile(1, {"F": t(1), "B": t(2), "I": t(0), "W": t(3), "F&B": t(4)})
    warnings = sanity_warnings([bad])
    assert any("stage 1: I is not positive" in w for w in warnings)
    assert any("stage 1: W = 3 is not below B = 2" in w for w in warnings)
    assert any("stage 1: F&B = 4 is outside [max(F, B), F + B] = [2, 3]" in w for w in warnings)
    [row] = cost_rows([bad], [0.5])
    assert (row["W"], row["F&B"], row["comm"]) == (2, 3, 0.5)
    block = format_cost_block([row])
    [spec] = schedc.parse(f"pipeline p {{ ranks = 1 microbatches = 2 schedule = zb-h1 {block} }}", "p.sched")
    assert spec.costs[0].weight == 2


def test_comm_is_measured_between_two_processes():
    from schedc.backends.torch.profile.comm import comm_from_bandwidth, measure_comm
    transfers = measure_comm([4096, 4 << 20, 0])
    small, large, none = transfers.comm
    assert 0 < small < large and none == 0
    # posting a send costs the sender time of its own, never (beyond noise) more than the trip; it
    # need not grow with the bytes: gloo may return from a large isend before the bytes are out
    # (seen in CI: 0.091 ms to post 4 KiB, 0.071 ms to post 4 MiB)
    post_small, post_large, post_none = transfers.send
    assert post_small > 0 and post_large > 0 and post_none == 0
    assert post_large <= 2 * large
    assert comm_from_bandwidth([2e9], 10) == [200.0]


def test_profile_out_writes_the_cost_block_into_a_copy(tmp_path, capsys):
    from schedc.cli import main
    source = tmp_path / "p.sched"
    text = "pipeline p {\n  ranks = 2  # two ranks\n  microbatches = 4\n  schedule = 1f1b\n}\n"
    source.write_text(text)
    out = tmp_path / "profiled.sched"
    argv = ["run", str(source), "--model", MLP, "--profile", "--repeats", "4", "--bandwidth", "10", "--profile-alone",
            "--calibrate", "0"]
    assert main(argv + ["--profile-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "comm computed from --bandwidth 10 GB/s" in printed
    assert source.read_text() == text  # the user's file is untouched
    written = out.read_text()
    assert "# two ranks" in written and "measured by schedc run --profile" in written
    [spec] = schedc.load(out)
    block = printed[printed.index("cost {"):]
    [printed_spec] = schedc.parse(f"pipeline p {{ ranks = 2 microbatches = 4 {block} }}", "x.sched")
    assert spec.costs == printed_spec.costs and all(c.forward > 0 for c in spec.costs)
    # an existing .sched file, or the input itself, is overwritten only with --force
    assert main(argv + ["--profile-out", str(out)]) == 2
    assert main(argv + ["--profile-out", str(source)]) == 2
    assert source.read_text() == text
    assert main(argv + ["--profile-out", str(source), "--force"]) == 0
    assert "measured by schedc run --profile" in source.read_text()


def test_replace_cost_block_keeps_everything_else_as_written():
    from schedc.lang.syntax import parse_program
    from schedc.lang.writer import replace_cost_block
    text = ("# header\npipeline a { ranks = 2 microbatches = 4 }\n"
            "pipeline b {\n  ranks = 2  # mine\n  microbatches = 4\n  cost { F = 1 stage 1 { F = 3 } }  # old\n}\n")
    program = parse_program(text, "x.sched")
    block = "cost { F = 5  B = 6 }"
    replaced = replace_cost_block(text, program.pipelines[1], block)
    assert replaced == text.replace("cost { F = 1 stage 1 { F = 3 } }", block)
    added = replace_cost_block(text, program.pipelines[0], block)
    assert added.startswith("# header\npipeline a { ranks = 2 microbatches = 4\n  cost { F = 5  B = 6 }\n}\n")
    assert added.endswith(text.split("\n", 2)[2])
    specs = schedc.parse(added, "y.sched")
    assert specs[0].costs[0].forward == 5 and specs[1].costs[1].forward == 3


def test_cpu_profiles_run_beside_companions_computing_as_the_other_ranks(capsys):
    import multiprocessing

    from schedc.backends.torch.profile.contention import companions
    from schedc.cli import main
    with companions(MLP, 2, "float64", 2):
        assert len(multiprocessing.active_children()) == 2  # both loaded the model and compute
    assert not multiprocessing.active_children()
    argv = ["run", str(ROOT / "examples" / "manual.sched"), "--model", MLP, "--profile", "--repeats", "4",
            "--bandwidth", "10", "--calibrate", "0"]
    assert main(argv) == 0
    assert "beside 1 process(es) computing as this host's other ranks do" in capsys.readouterr().out


def test_comm_on_one_gpu_is_measured_through_host_memory(monkeypatch):
    """NCCL needs a GPU per process: with one GPU the profile measures over gloo and says so."""
    import argparse

    from schedc.backends.torch.profile import comm
    from schedc.backends.torch.profile.driver import measured_comm
    calls = []
    monkeypatch.setattr(comm, "measure_comm", lambda sizes, backend, where: calls.append((backend, where)) or
                        comm.Transfers([1.0] * len(sizes), [0.1] * len(sizes)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    transfers, how = measured_comm([8, 0], argparse.Namespace(comm=None), torch.device("cuda"))
    assert transfers.comm == [1.0, 1.0] and calls == [("gloo", "cpu")] and how == "measured between two processes over gloo (host memory)"
