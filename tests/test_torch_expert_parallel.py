"""Expert parallelism in the run (`schedc run --ep E`): the chunk-parts executor against plain
autograd, the pipelined EP run against a single-process one for every family that overlaps or
splits the backward, uneven routing (members that receive no token), and the errors a user meets.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # starts processes: slow; skip locally with -m 'not torchrun'

from test_torch_backend import MLP, ROOT, free_port, launch, sched  # noqa: E402

from schedc.backends.torch.expert_parallel import (ChunkRun, Exchange, Part, interleave, parts_of,  # noqa: E402
                                                   run_parts, sequential)

MOE = str(ROOT / "examples" / "models" / "moe.py")


def load_moe():
    spec = importlib.util.spec_from_file_location("moe_for_tests", MOE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grads_of(modules):
    return [None if p.grad is None else p.grad.clone() for m in modules for p in m.parameters()]


def test_a_part_is_compute_or_exchange_and_an_exchange_has_splits_or_counts():
    with pytest.raises(ValueError, match="exactly one of compute= and exchange="):
        Part("both", compute=lambda s: s, exchange=Exchange("a", "b", splits="s"))
    with pytest.raises(ValueError, match="exactly one of splits= and counts="):
        Exchange("a", "b")


def test_a_sequential_of_plain_modules_and_parted_ones_concatenates_their_parts():
    moe = load_moe()
    stage = torch.nn.Sequential(torch.nn.Linear(moe.WIDTH, moe.WIDTH), moe.MoEBlock())
    assert [p.name for p in parts_of(stage)] == ["Linear", "attention", "dispatch", "mlp", "combine", "mix"]
    assert parts_of(torch.nn.Sequential(torch.nn.Linear(2, 2))) is None  # no contract: F then B


def test_chunk_parts_interleaved_give_autograds_values_and_gradients():
    """Two stages, two microbatches, one overlapped pair (stage 0's forward of microbatch 1 beside
    stage 1's backward of microbatch 0), an input-only backward and its W: every gradient equals
    plain autograd's, bit for bit (one member: the exchanges hand tensors over)."""
    moe = load_moe()
    stages = [m.double() for m in moe.build_stages(2)]
    reference = [m.double() for m in moe.build_stages(2)]
    xs, ys = moe.make_batch(2)
    xs, ys = [x.double() for x in xs], [y.double() for y in ys]
    for x, y in zip(xs, ys):
        moe.loss_fn(reference[1](reference[0](x)), y).backward()

    def forward(stage, x, loss=None, target=None):
        chunk = ChunkRun(parts_of(stages[stage]), x, f"stage {stage}", loss, target)
        sequential(chunk.forward())
        return chunk

    first = forward(0, xs[0])
    x1 = first.out.detach().requires_grad_(True)
    last = forward(1, x1, moe.loss_fn, ys[0])
    second = ChunkRun(parts_of(stages[0]), xs[1], "stage 0")
    interleave(second.forward(), last.backward(None))
    sequential(first.backward(x1.grad))
    x2 = second.out.detach().requires_grad_(True)
    last2 = forward(1, x2, moe.loss_fn, ys[1])
    sequential(last2.backward(None, weights=False, params=list(stages[1].parameters())))
    assert x2.grad is not None and all(p.grad is None or True for p in stages[1].parameters())
    last2.weight(stages[1].parameters())
    sequential(second.backward(x2.grad))
    for got, want in zip(grads_of(stages), grads_of(reference)):
        assert (got is None) == (want is None)
        if got is not None:
            assert torch.equal(got, want)


def test_an_expert_parallel_module_refuses_plain_autograd_with_a_group():
    moe = load_moe()
    block = moe.MoEBlock()
    block.group = object()  # a group is set: only the chunk executor may train it
    with pytest.raises(RuntimeError, match="chunk executor"):
        run_parts(block.chunk_parts(), torch.randn(2, 3, moe.WIDTH))


def ep_sched(tmp_path, family, ranks=2, microbatches=4):
    return sched(tmp_path, family, ranks, microbatches, name=f"{family}.sched")


@pytest.mark.parametrize("family,skew", [("1f1b", "50"), ("zb-h1", "1.5"), ("zbv", "1.5"), ("dualpipe", "1.5"),
                                         ("dualpipev", "0")])
def test_every_family_with_ep_matches_the_single_process_run(family, skew, tmp_path):
    """ranks = 2, ep = 2: four processes. Skew 50 sends every token to the last two experts, so
    member 0 of each group receives no row on every dispatch (it must still take part); 1.5 (the
    default) leaves some experts without tokens on some microbatches; 0 routes evenly."""
    path = ep_sched(tmp_path, family)
    codes, outputs, _ = launch([path] * 4, model=MOE, extra=("--check", "--steps", "2", "--ep", "2",
                                                             "--timeout", "30"), env_extra={"MOE_SKEW": skew})
    assert codes == [0] * 4, outputs
    assert "PASS" in outputs[0] and "exposed communication" in outputs[0]


def test_compare_overlap_runs_the_pairs_both_ways_and_trains_the_same(tmp_path):
    """And --trace draws a communication lane under each process: every all-to-all, posted to done."""
    import json

    trace = tmp_path / "trace.json"
    codes, outputs, _ = launch([ep_sched(tmp_path, "dualpipe")] * 4, model=MOE,
                               extra=("--check", "--ep", "2", "--compare-overlap", "--dtype", "float32",
                                      "--trace", str(trace)))
    assert codes == [0] * 4, outputs
    assert "PASS" in outputs[0] and "chunks pairs: step" in outputs[0]
    assert "sequential pairs: step" in outputs[0] and "overlap hid" in outputs[0]
    events = json.loads(trace.read_text())["traceEvents"]
    lanes = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"}
    assert (3, "communication") in lanes
    flights = [e for e in events if e.get("tid") == 1 and e["ph"] == "X"]
    assert {e["pid"] for e in flights} == {0, 1, 2, 3}
    assert any(e["name"].startswith("dispatch (forward) of stage") for e in flights)
    assert any("(backward)" in e["name"] for e in flights)


def run_cli(*argv, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", "run", *argv], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize("model,ep,env,message", [
    (MLP, "2", {}, "--ep 2, but the model has no expert layers"),
    (MOE, "3", {}, "--ep 3 must divide every MoE layer's experts, but a MoEBlock has 4"),
    (MOE, "2", {"MOE_BATCH": "3"}, "make_batch's microbatches have 3 rows there; make it a multiple of 2")])
def test_ep_that_cannot_run_is_refused_before_anything_starts(model, ep, env, message, tmp_path):
    result = run_cli(ep_sched(tmp_path, "1f1b"), "--model", model, "--ep", ep, env_extra=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "torch.distributed.run" not in result.stderr  # nothing started


def test_a_world_that_is_not_ranks_times_ep_is_refused(tmp_path):
    codes, outputs, _ = launch([ep_sched(tmp_path, "1f1b")] * 2, model=MOE, extra=("--ep", "2"))
    assert codes == [1, 1]
    assert "has ranks = 2 and --ep 2, so 4 processes, but 2 processes run it" in outputs[0]


def test_a_member_killed_mid_step_is_named_and_every_process_exits(tmp_path):
    """Process 1 (rank 0, EP member 1) dies in its second MoE layer's experts: its group partner
    fails in the combine of that microbatch, naming it; every process exits within the timeout."""
    model = tmp_path / "dying.py"
    model.write_text(Path(MOE).read_text() + '''
_experts_part = MoEBlock._experts
_calls = [0]


def _dying_experts(self, state):
    _calls[0] += 1
    if os.environ.get("RANK") == "1" and _calls[0] == 3:
        os._exit(7)
    return _experts_part(self, state)


MoEBlock._experts = _dying_experts
''')
    codes, outputs, seconds = launch([ep_sched(tmp_path, "1f1b")] * 4, model=str(model),
                                     extra=("--ep", "2", "--timeout", "10"))
    assert codes[1] == 7 and all(code != 0 for code in codes), (codes, outputs)
    assert seconds < 90
    assert "combine (forward) of stage 0 microbatch 1" in outputs[0] or "dispatch" in outputs[0], outputs[0]
