"""The MoE example, small: loads recorded by forward hooks, balanced, applied to batches."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the MoE example and the load counter need torch")

from schedc.backends.torch.expert_loads import ExpertLoadCounter, count_tokens, tokens_per_gpu  # noqa: E402

EXAMPLE = Path(__file__).parent.parent / "examples" / "models" / "moe.py"


def load_example():
    spec = importlib.util.spec_from_file_location("moe_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counter_counts_topk_indices_from_a_hook():
    gate = torch.nn.Identity()
    counter = ExpertLoadCounter(1, 4)
    handle = counter.attach([gate])[0]
    gate(torch.tensor([[0, 1], [1, 3], [1, 0]]))
    handle.remove()
    assert counter.loads().tolist() == [[2, 3, 0, 1]]
    assert count_tokens(torch.tensor([2, 2, 5]), 6).tolist() == [0, 0, 2, 0, 0, 1]


def test_tokens_per_gpu_splits_an_expert_evenly_over_its_replicas():
    indices = torch.tensor([0] * 6 + [1] * 2)
    per_gpu = tokens_per_gpu(indices, [0, 1, 0, 0], 2)  # expert 0 on slots 0, 2, 3
    assert per_gpu.tolist() == [2 + 2, 2 + 2]


def test_moe_example_small_balances_recorded_loads():
    moe = load_example()
    out = moe.run(layers=2, experts=16, gpus=4, replicas=20, batches_seen=2)
    weight = out["weight"]
    assert weight.sum() == 2 * 2 * moe.TOKENS * moe.TOP_K  # layers x batches x tokens x k
    best, eplb = out["best"]["plan"], out["eplb"]["plan"]
    assert (best.max_time <= eplb.max_time + 1e-9).all()
    for name in ("best", "eplb", "no redundancy"):
        assert (out[name]["fresh"].sum(1) == 2 * moe.TOKENS * moe.TOP_K).all()
    fresh_best = out["best"]["fresh"].double()
    fresh_base = out["no redundancy"]["fresh"].double()
    assert (fresh_best.max(1).values < fresh_base.max(1).values).all()


def test_applying_a_plan_to_its_own_batches_gives_the_planned_loads():
    moe = load_example()
    model = moe.build_model(1, 8)
    data = moe.batches(2, seed=1)
    counter = ExpertLoadCounter(1, 8)
    handle = counter.attach([model[0].router])[0]
    with torch.no_grad():
        for x in data:
            model(x)
    handle.remove()
    from schedc.experts import plan_experts
    plan = plan_experts(counter.loads(), 12, 1, 1, 4)
    measured = moe.fresh_tokens_per_gpu(model, plan.phy2log, 4, data).double().numpy()
    assert np.abs(measured - plan.gpu_loads).max() <= 3  # an equal split, up to one token a slot
