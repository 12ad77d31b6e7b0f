"""Live expert balancing (`schedc run --ep E --rebalance-every N`): routing to replicas, the moves a
placement change needs, the checksummed expert messages with their optimizer state, replicas'
gradients summed, and in a real run: `--check` across rebalances, the load log `schedc balance`
replays, a member dying mid-migration, the options a user can get wrong.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from test_torch_backend import ROOT, launch, sched  # noqa: E402

from schedc.backends.torch.expert_loads import route_to_slots, tokens_per_gpu  # noqa: E402
from schedc.backends.torch.expert_parallel.groups import ExpertParallel, sum_replica_gradients  # noqa: E402
from schedc.backends.torch.expert_parallel.live import imbalance, member_loads  # noqa: E402
from schedc.backends.torch.expert_parallel.migration import (add_redundant_slots, install, pack,  # noqa: E402
                                                             plan_moves, verify)

MOE = str(ROOT / "examples" / "models" / "moe.py")


def test_one_slot_per_expert_routes_to_the_expert_itself():
    indices = torch.tensor([[3, 1], [0, 3], [2, 2]])
    assert route_to_slots(indices, torch.arange(4), 4) is indices


def test_the_nth_pair_of_an_expert_goes_to_its_replica_n_mod_count():
    indices = torch.tensor([0, 1, 0, 0, 2, 0])  # expert 0's pairs: positions 0, 2, 3, 5
    phy2log = torch.tensor([2, 0, 1, 0])  # expert 0 in slots 1 and 3
    assert route_to_slots(indices, phy2log, 3).tolist() == [1, 2, 3, 1, 0, 3]
    assert tokens_per_gpu(indices, phy2log, 2).tolist() == [3, 3]  # slots 0-1 | 2-3


def test_moves_prefer_a_copy_on_the_target_member_and_may_form_cycles():
    old = [torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 2])]
    new = [torch.tensor([2, 1, 0, 3]), torch.tensor([0, 0, 1, 2])]  # layer 0: 0 and 2 trade members
    moves = plan_moves(old, new, members=2)
    assert [(m.layer, m.slot, m.expert, m.source, m.target) for m in moves] == [
        (0, 0, 2, 1, 0), (0, 2, 0, 0, 1), (1, 1, 0, 0, 0), (1, 2, 1, 0, 1)]
    assert moves[2].source_slot == 0  # expert 0 already on member 0: a local copy


def expert(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.Linear(4, 3)).double()


def test_an_expert_message_carries_weights_and_optimizer_state_and_a_digest():
    source, target = expert(1), expert(2)
    optimizer = torch.optim.SGD(list(source.parameters()) + list(target.parameters()), lr=0.1, momentum=0.9)
    source(torch.randn(5, 3, dtype=torch.float64)).sum().backward()
    optimizer.step()  # momentum buffers for the source only
    message = pack(source, optimizer)
    install(target, optimizer, verify(message))
    for p, q in zip(source.parameters(), target.parameters()):
        assert torch.equal(p, q) and p is not q
        assert torch.equal(optimizer.state[p]["momentum_buffer"], optimizer.state[q]["momentum_buffer"])
    damaged = bytearray(message)
    damaged[-5] ^= 1
    assert verify(bytes(damaged)) is None
    fresh = torch.optim.SGD(target.parameters(), lr=0.1, momentum=0.9)  # no state yet
    fresh.state[next(target.parameters())]["momentum_buffer"] = torch.zeros(4, 3)
    install(target, fresh, verify(pack(expert(3), None)))
    assert not fresh.state  # a never-stepped expert arrives without state: none is left behind


def test_imbalance_is_max_over_mean_tokens_per_member_each_replica_an_equal_share():
    counts = torch.tensor([60, 20, 10, 10])
    assert member_loads(counts, torch.arange(4), 2).tolist() == [80, 20]
    assert member_loads(counts, torch.tensor([0, 1, 0, 2, 3, 0]), 2).tolist() == [60, 40]
    assert imbalance(counts[None], [torch.arange(4)], 2) == pytest.approx(1.6)


class Layer(torch.nn.Module):
    def __init__(self, experts):
        super().__init__()
        self.num_experts = experts
        self.experts = torch.nn.ModuleList(expert(e) for e in range(experts))
        self.phy2log = torch.arange(experts)

    def shard_experts(self, member, members, group):
        raise AssertionError("not called here")


def test_redundant_slots_copy_own_experts_and_replica_gradients_are_summed():
    layer = Layer(3)
    add_redundant_slots([layer], ExpertParallel(0, 0, 1), 2)
    assert layer.phy2log.tolist() == [0, 1, 2, 0, 1]
    assert all(torch.equal(p, q) for p, q in zip(layer.experts[0].parameters(), layer.experts[3].parameters()))
    x = torch.randn(4, 3, dtype=torch.float64)
    layer.experts[0](x[:2]).pow(2).sum().backward()
    layer.experts[3](x[2:]).pow(2).sum().backward()
    layer.experts[2](x).sum().backward()
    whole = expert(0)
    whole(x).pow(2).sum().backward()
    sum_replica_gradients([layer], ExpertParallel(0, 0, 1))
    for copy in (layer.experts[0], layer.experts[3]):
        for p, q in zip(copy.parameters(), whole.parameters()):
            assert torch.allclose(p.grad, q.grad, rtol=1e-14, atol=0)
    assert all(p.grad is None for p in layer.experts[1].parameters())  # no copy was reached: none
    assert all(p.grad is None for p in layer.experts[4].parameters())


# ---- real runs ------------------------------------------------------------------------------------

ZIPF = {"MOE_EXPERTS": "8", "MOE_ZIPF": "1.0"}


@pytest.mark.torchrun
def test_check_passes_across_two_rebalances_and_the_log_replays(tmp_path):
    """ranks = 2, ep = 2, 8 experts with 2 redundant slots, a Zipf-skewed router: two rebalances
    (after steps 2 and 4 of 5); the run trains the same model as the single-process one (which
    never rebalances), the imbalance drops, `schedc balance` replays each decision, and the trace
    marks each rebalance on every process's communication lane."""
    log, trace = tmp_path / "loads", tmp_path / "trace.json"
    codes, outputs, _ = launch([sched(tmp_path, "1f1b", 2, 4)] * 4, model=MOE, env_extra=ZIPF, extra=(
        "--check", "--steps", "5", "--ep", "2", "--rebalance-every", "2", "--redundant", "2",
        "--load-log", str(log), "--timeout", "30", "--trace", str(trace)))
    assert codes == [0] * 4, outputs
    out = outputs[0]
    assert "PASS" in out and out.count("rebalance after step") == 4, out
    decision = json.loads((log / "rank0-step1.json").read_text())
    assert decision["committed"] and decision["moves"] > 0
    assert decision["imbalance_planned"] < 0.75 * decision["imbalance_before"]
    steps = [json.loads(line) for line in (log / "rank1-steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4]
    replay = tmp_path / "replay.json"
    path = str(log / "rank0-step1.json")
    result = subprocess.run([sys.executable, "-m", "schedc", "balance", path, "--previous", path, "--replicas", "10",
                             "--gpus", "2", "--tolerance", "0.02", "-o", str(replay)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(replay.read_text())["phy2log"] == decision["placed"]
    marks = [e for e in json.loads(trace.read_text())["traceEvents"] if e["name"].startswith("rebalance: ")]
    assert {e["pid"] for e in marks} == {0, 1, 2, 3} and len(marks) == 8  # two per process, on its lane


@pytest.mark.torchrun
def test_a_member_dying_mid_migration_stops_every_process_naming_the_expert(tmp_path):
    model = tmp_path / "dying.py"
    model.write_text(Path(MOE).read_text() + '''
import schedc.backends.torch.expert_parallel.migration as _migration
_exchange = _migration.exchange


def _dying_exchange(*args, **kwargs):
    if os.environ.get("RANK") == "1":
        os._exit(7)
    return _exchange(*args, **kwargs)


_migration.exchange = _dying_exchange
''')
    codes, outputs, seconds = launch([sched(tmp_path, "1f1b", 2, 4)] * 4, model=str(model), env_extra=ZIPF, extra=(
        "--steps", "3", "--ep", "2", "--rebalance-every", "1", "--timeout", "10"))
    assert codes[1] == 7 and all(code != 0 for code in codes), (codes, outputs)
    assert "live rebalancing failed" in outputs[0] and "moving expert" in outputs[0], outputs[0]
    assert "of stage 0 MoE layer" in outputs[0]
    assert all("live rebalancing failed" in out for out in (outputs[2], outputs[3])), outputs
    assert seconds < 90


def run_cli(*argv, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", "run", *argv], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize("extra,message", [
    (("--ep", "2", "--window", "3"), "--window tunes live expert balancing: add --rebalance-every N"),
    (("--rebalance-every", "2"), "--rebalance-every moves experts between the members of an EP group: give --ep 2"),
    (("--ep", "2", "--rebalance-every", "2", "--redundant", "3"), "--redundant 3 must be a multiple of --ep 2"),
    (("--ep", "2", "--rebalance-every", "2", "--redundant", "10"), "--redundant 10 is more than a layer's 8 experts"),
])
def test_live_balancing_options_that_cannot_work_are_refused_before_anything_starts(extra, message, tmp_path):
    result = run_cli(str(sched(tmp_path, "1f1b", 2, 4)), "--model", MOE, *extra, env_extra=ZIPF)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "torch.distributed.run" not in result.stderr


def test_a_load_log_folder_that_holds_files_is_not_overwritten(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "mine.txt").write_text("keep me")
    result = run_cli(str(sched(tmp_path, "1f1b", 2, 4)), "--model", MOE, "--ep", "2", "--rebalance-every", "2",
                     "--load-log", str(tmp_path / "log"), env_extra=ZIPF)
    assert result.returncode == 2 and "already exists and is not an empty folder" in result.stderr
    assert (tmp_path / "log" / "mine.txt").read_text() == "keep me"
