"""The torch backend runs every family (gloo, CPU, one process per rank) and matches a
single-process run; a failing rank stops every rank; ranks with different plans refuse to run."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # the torch backend: slow; skip locally with -m 'not torchrun'

ROOT = Path(__file__).parent.parent
MLP = str(ROOT / "examples" / "models" / "mlp.py")
FAMILIES = {  # small sizes: the test spawns one process per rank on a 2-core machine
    "gpipe": (2, 3), "1f1b": (3, 4), "interleaved": (2, 4), "zb-h1": (3, 4), "zb-h2": (3, 5),
    "zbv": (2, 4), "dualpipe": (4, 8), "dualpipev": (2, 4),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(files, model=MLP, extra=(), env_extra=None, timeout=300):
    """Start one process per rank (files[r] for rank r); returns (returncodes, outputs, seconds)."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE=str(len(files)), **(env_extra or {}))
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-m", "schedc.backends.torch", str(f),
                               "--model", model, *extra], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r, f in enumerate(files)]
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [p.returncode for p in procs], outputs, time.monotonic() - start


def model_with_broken_stage(tmp_path, name, rank, stage, forward_body):
    """The MLP, except that `stage` on `rank` runs `forward_body` (failing or dying)."""
    path = tmp_path / f"{name}.py"
    path.write_text(Path(MLP).read_text() + f"""
import os, signal
class Broken(torch.nn.Module):
    def forward(self, x):
        {forward_body}
_build = build_stages
def build_stages(num_stages):
    stages = _build(num_stages)
    if os.environ["RANK"] == "{rank}":
        stages[{stage}] = Broken()
    return stages
""")
    return str(path)


def sched(tmp_path, family, ranks, microbatches, name="p.sched", extra=""):
    path = tmp_path / name
    path.write_text(f"pipeline p {{ ranks = {ranks} microbatches = {microbatches} schedule = {family} "
                    f"cost {{ F = 1 B = 2 W = 1 F&B = 2.5 }} {extra} }}\n")
    return path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_matches_the_single_process_run(family, tmp_path):
    ranks, microbatches = FAMILIES[family]
    path = sched(tmp_path, family, ranks, microbatches)
    codes, outputs, _ = launch([path] * ranks, extra=("--check", "--steps", "2"))
    assert codes == [0] * ranks, "\n".join(outputs)[-3000:]
    line = next(l for l in outputs[0].splitlines() if "largest relative error" in l)
    assert line.endswith("PASS") and float(line.split(": ")[1].split()[0]) <= 1e-12


def test_hand_written_order_runs(tmp_path):
    codes, outputs, _ = launch([ROOT / "examples" / "manual.sched"] * 2, extra=("--check",))
    assert codes == [0, 0] and "PASS" in outputs[0]


def test_a_failing_rank_stops_every_rank_and_says_where(tmp_path):
    model = model_with_broken_stage(tmp_path, "failing", 1, 1, 'raise ValueError("boom")')
    path = sched(tmp_path, "1f1b", 3, 4)
    codes, outputs, seconds = launch([path] * 3, model=model, extra=("--timeout", "20"))
    assert all(code != 0 for code in codes), codes
    assert "rank 1, instruction 1 (F1.0): boom" in outputs[1]
    assert seconds < 60


def test_schedc_run_reports_a_failing_rank_without_a_traceback(tmp_path):
    model = model_with_broken_stage(tmp_path, "failing", 1, 1, 'raise ValueError("boom")')
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", "run",
                             str(ROOT / "examples" / "manual.sched"), "--model", model, "--timeout", "20"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "rank 1, instruction 1 (F1.0): boom" in result.stderr
    assert result.stderr.rstrip().endswith("the failing ranks said why above")
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr


def test_a_rank_started_without_torchrun_says_how_to_start_it():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc.backends.torch",
                             str(ROOT / "examples" / "manual.sched"), "--model", MLP],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "RANK and WORLD_SIZE are not set" in result.stderr and "schedc run" in result.stderr


def test_ranks_with_different_plans_refuse_to_run(tmp_path):
    a = sched(tmp_path, "1f1b", 2, 4, "a.sched")
    b = sched(tmp_path, "1f1b", 2, 6, "b.sched")
    codes, outputs, _ = launch([a, b])
    assert codes == [1, 1]
    assert all("the ranks hold different plans" in out for out in outputs)


def test_schedc_run_launches_torchrun_checks_and_traces(tmp_path):
    import json
    trace = tmp_path / "measured.json"
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", "run",
                             str(ROOT / "examples" / "manual.sched"), "--model", MLP, "--nproc", "2",
                             "--check", "--trace", str(trace)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PASS" in result.stdout and "bubble ratio: measured" in result.stdout
    assert "measured step" in result.stdout and "; predicted step " in result.stdout
    events = json.loads(trace.read_text())["traceEvents"]
    import schedc
    [spec] = schedc.load(ROOT / "examples" / "manual.sched")
    plan = schedc.compile(spec).plan
    for rank in range(2):
        assert sum(1 for e in events if e["ph"] == "X" and e["pid"] == rank) == len(plan.ranks[rank])


def test_profile_prints_a_cost_block_that_parses(capsys):
    import schedc
    from schedc.cli import main
    assert main(["run", str(ROOT / "examples" / "zb-h1.sched"), "--model", MLP, "--profile",
                 "--bandwidth", "10", "--repeats", "4", "--profile-alone", "--calibrate", "0"]) == 0
    block = capsys.readouterr().out.split("\n", 1)[1]
    [spec] = schedc.parse(f"pipeline p {{ ranks = 4 microbatches = 8 schedule = zb-h1\n{block} }}", "p.sched")
    assert all(c.forward > 0 and c.backward >= c.weight >= 0 for c in spec.costs)


def test_transformer_with_the_overlap_hook_matches_under_dualpipe(tmp_path):
    model = tmp_path / "hooked.py"
    marker = tmp_path / "hook_calls"
    model.write_text((ROOT / "examples" / "models" / "transformer.py").read_text() + f'''
import atexit, os
atexit.register(lambda: open({str(marker)!r} + os.environ["RANK"], "w").write(str(HOOK_CALLS)))
''')
    path = sched(tmp_path, "dualpipe", 4, 8)
    codes, outputs, _ = launch([path] * 4, model=str(model), extra=("--check",))
    assert codes == [0] * 4, "\n".join(outputs)[-3000:]
    assert "PASS" in outputs[0]
    import schedc
    [spec] = schedc.load(path)
    plan = schedc.compile(spec).plan
    for rank in range(4):
        pairs = sum(1 for x in plan.ranks[rank] if x.kind.value == "OVERLAP")
        assert int((tmp_path / f"hook_calls{rank}").read_text()) == pairs > 0


def test_float32_check_uses_the_float32_tolerance(tmp_path):
    path = sched(tmp_path, "zbv", 2, 4)
    codes, outputs, _ = launch([path] * 2, model=str(ROOT / "examples" / "models" / "transformer.py"),
                               extra=("--check", "--dtype", "float32"))
    assert codes == [0, 0] and "tolerance 1e-05, float32): PASS" in outputs[0]


def run_on_one_rank(tmp_path, family, prepare=lambda runner: None):
    """One step of `family` on a single rank (gloo, world of one) with the transformer blocks;
    returns the runner, its losses and the single-process reference (grads, losses)."""
    import torch
    import torch.distributed as dist

    import schedc
    from schedc.backends.torch import runner as runner_module
    from schedc.backends.torch.equivalence import reference_run
    from schedc.backends.torch.model_file import load_model
    model = load_model(str(ROOT / "examples" / "models" / "transformer.py"))
    [spec] = schedc.parse(f"pipeline one {{ ranks = 1 microbatches = 3 schedule = {family} }}", "one.sched")
    compiled = schedc.compile(spec)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        run = runner_module.PipelineRunner(compiled.spec, compiled.plan, 0,
                                           lambda n: [m.double() for m in model.build_stages(n)], model.loss_fn)
        prepare(run)
        inputs, targets = model.make_batch(3)
        inputs, targets = [x.double() for x in inputs], [y.double() for y in targets]
        losses = run.step(inputs, targets)
    finally:
        dist.destroy_process_group()
    return run, losses, reference_run(model, compiled.spec.num_stages, 3, 1, torch.float64, 0.01)[1:]


def assert_matches_reference(run, losses, ref):
    import torch
    grads, ref_losses = ref
    for (_d, stage), module in run.modules.items():
        for got, want in zip(module.parameters(), grads[stage]):
            assert torch.allclose(got.grad, want, rtol=1e-12, atol=1e-14)
    assert [float(l) for l in losses.values()] == pytest.approx([float(l) for l in ref_losses], rel=1e-12)


@pytest.mark.parametrize("helpers", [True, False])
def test_both_ways_of_splitting_the_backward_give_the_reference_gradients(helpers, monkeypatch, tmp_path):
    from schedc.backends.torch import compute
    if helpers and not compute.SPLIT_WITH_TORCH_HELPERS:
        pytest.skip("this torch has no pipelining backward helpers")
    monkeypatch.setattr(compute, "SPLIT_WITH_TORCH_HELPERS", helpers)
    # one rank holding two stages (V placement), so the split runs on a stage with an input gradient
    assert_matches_reference(*run_on_one_rank(tmp_path, "zbv"))


def test_overlapped_pairs_without_a_hook_take_the_two_stream_path(monkeypatch, tmp_path):
    """No GPU here: stand-ins for CUDA's streams run the two-stream path of an overlapped pair and
    log what it asks of them: the side stream waits for the current one, the forward runs inside
    it, the backward outside, then the current stream waits for the side one."""
    import contextlib

    import torch
    log = []

    class Stream:
        def __init__(self, name):
            self.name, self.device = name, None

        def wait_stream(self, other):
            log.append(f"{self.name} waits {other.name}")

    current = Stream("current")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: Stream("side"))

    @contextlib.contextmanager
    def on(stream):
        log.append(f"enter {stream.name}")
        yield
        log.append(f"leave {stream.name}")

    monkeypatch.setattr(torch.cuda, "stream", on)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda tensor, stream: log.append(f"record {stream.name}"))

    from schedc.backends.torch import compute
    for name in ("stage_forward", "full_backward"):
        function = getattr(compute, name)
        monkeypatch.setattr(compute, name, lambda *a, f=function, n=name, **k: (log.append(n), f(*a, **k))[1])

    def prepare(runner):
        runner.overlap_way = "streams"
        for block in runner.modules.values():  # the same blocks without their overlap hook
            block.__class__ = type("PlainBlock", (type(block),), {"overlapped_forward_backward": None})

    run, losses, ref = run_on_one_rank(tmp_path, "dualpipev", prepare)
    assert_matches_reference(run, losses, ref)
    pairs = sum(1 for x in run.plan.ranks[0] if x.kind.value == "OVERLAP")
    pattern = ["side waits current", "enter side", "stage_forward", "leave side", "full_backward",
               "current waits side"]
    starts = [i for i, entry in enumerate(log) if entry == "side waits current"]
    assert len(starts) == pairs > 0
    for i in starts:
        assert log[i:i + len(pattern)] == pattern
        assert "record current" in log[i + len(pattern):i + len(pattern) + 4]


PROBE = """
import weakref
class Probe(torch.nn.Module):
    \"\"\"A linear stage (its backward does not need its output) that reports, at each backward of
    its output, how many of the outputs it returned this step still hold their storage.\"\"\"
    def __init__(self, index):
        super().__init__()
        self.index, self.linear, self.outputs = index, torch.nn.Linear(WIDTH, WIDTH), []
    def forward(self, x):
        out = self.linear(x)
        self.outputs.append(weakref.ref(out.untyped_storage()))
        out.register_hook(self.report)
        return out
    def report(self, grad):
        alive = sum(r() is not None for r in self.outputs)
        print(f"stage {self.index}: {alive} outputs alive", flush=True)
def build_stages(num_stages):
    torch.manual_seed(0)
    return [Probe(i) for i in range(num_stages)]
"""


@pytest.mark.parametrize("keep", [False, True])
def test_sent_outputs_give_their_storage_back_once_the_peer_has_them(keep, tmp_path):
    model = tmp_path / "probe.py"
    model.write_text(Path(MLP).read_text() + PROBE)
    path = sched(tmp_path, "gpipe", 2, 4)
    codes, outputs, _ = launch([path] * 2, model=str(model),
                               extra=("--check",) + (("--keep-sent-outputs",) if keep else ()))
    assert codes == [0, 0] and "PASS" in outputs[0], outputs[0][-3000:]
    alive = [int(line.split(": ")[1].split()[0]) for line in outputs[0].splitlines()
             if line.startswith("stage 0:")][:4]  # the pipelined step; the reference run follows
    # GPipe: rank 0 sends all four forwards before its first backward, whose gradient rank 1 sends
    # only after receiving them all, so none needs keeping; kept, the first backward sees all four
    assert alive == ([4, 3, 2, 1] if keep else [0, 0, 0, 0])


def test_releasing_an_output_keeps_its_gradients_and_spares_tensors_others_hold():
    import torch

    from schedc.backends.torch.transfers import release_storage
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 4, dtype=torch.float64)
    for last in (lambda h: h, torch.tanh):  # tanh saves its output: it must survive the release
        want = torch.autograd.grad(last(x @ weight), [x, weight], grad)
        out = last(x @ weight)
        release_storage(out)
        assert out.shape == (3, 4) and out.untyped_storage().nbytes() == 8
        got = torch.autograd.grad(out, [x, weight], grad)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    before = x.detach().clone()
    release_storage(x)  # a stage that returns its input: the tensor is the caller's
    view = (x @ weight)[:, :2]
    release_storage(view)  # a view: its base stays alive, nothing to gain
    assert torch.equal(x.detach(), before) and view.untyped_storage().nbytes() == 3 * 4 * 8


def test_devices_and_process_groups_are_picked_or_refused_with_a_way_out(monkeypatch):
    import torch

    from schedc.backends.torch.__main__ import pick_devices
    assert pick_devices("cpu", None, 3) == (torch.device("cpu"), "gloo")
    with pytest.raises(SystemExit, match="NCCL runs on GPUs only"):
        pick_devices("cpu", "nccl", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_devices(None, None, 0) == (torch.device("cpu"), "gloo")
    with pytest.raises(SystemExit, match="sees no GPU; use --device cpu"):
        pick_devices("cuda", None, 0)
    # one GPU, two ranks: NCCL refuses the second, gloo shares the GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit, match="add --comm gloo to share GPUs"):
        pick_devices("cuda", None, 1)
    assert pick_devices("cuda", "gloo", 1) == (torch.device("cuda:0"), "gloo")


def test_schedc_run_refuses_devices_it_cannot_use_before_starting_torchrun(monkeypatch):
    import torch

    from schedc.backends.torch.launch import device_problem
    assert device_problem(4, "cpu", None) is None
    assert "NCCL runs on GPUs only" in device_problem(4, "cpu", "nccl")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_problem(4, None, None) is None  # the ranks fall back to cpu
    assert "--comm nccl needs GPUs, and this torch sees none" in device_problem(4, None, "nccl")
    assert "sees no GPU; use --device cpu" in device_problem(4, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert "4 ranks, 1 GPU(s); add --comm gloo" in device_problem(4, None, None)
    assert device_problem(4, "cuda", "gloo") is None and device_problem(1, "cuda", None) is None


def test_the_plan_proves_which_sends_the_peer_has_received():
    import schedc
    from schedc.backends.torch.transfers import sends_received_before
    [spec] = schedc.parse("pipeline p { ranks = 3 microbatches = 4 schedule = 1f1b }", "p.sched")
    plan = schedc.compile(spec).plan
    # rank 0: F0 F1 F2 sent in warm-up; rank 1 sends B0 after receiving F0 and F1 (its warm-up is
    # one forward, then F1 B0), B1 after F2, B2 after F3, B3 after nothing new
    proof = sends_received_before(plan, 0)
    assert list(proof.values()) == [2, 3, 4, 4]
    # rank 1 hears from rank 0 (forwards) and rank 2 (gradients); rank 0 never waits on rank 1
    # before sending forwards, so nothing rank 1 sent to it is proven by them
    proof = sends_received_before(plan, 1)
    from_rank0 = [proof[i] for i, x in enumerate(plan.ranks[1]) if i in proof and x.peer == 0]
    assert from_rank0 == [0, 0, 0, 1]


def test_a_killed_rank_makes_every_rank_exit_non_zero_in_bounded_time(tmp_path):
    model = model_with_broken_stage(tmp_path, "killed", 2, 2, "os.kill(os.getpid(), signal.SIGKILL)")
    path = sched(tmp_path, "1f1b", 3, 4)
    codes, outputs, seconds = launch([path] * 3, model=model, extra=("--timeout", "15"))
    assert all(code != 0 for code in codes), codes
    assert codes[2] == -9
    assert seconds < 60
    assert all("rank" in out and "instruction" in out for out in outputs[:2]), outputs[:2]
