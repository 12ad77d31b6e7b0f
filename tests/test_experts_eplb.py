"""policy="eplb" is DeepSeek's EPLB exactly: the README example, and a loop-by-loop torch oracle
(schedc.experts.reference) on random loads."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from schedc.experts import plan_experts, rebalance_experts

README_WEIGHT = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                 [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
README_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]
README_LOGCNT = [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1], [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]]


def test_eplb_readme_example_reproduces_deepseeks_plan():
    phy2log, log2phy, logcnt = rebalance_experts(np.array(README_WEIGHT), 16, 4, 2, 8, policy="eplb")
    assert phy2log.tolist() == README_PHY2LOG
    assert logcnt.tolist() == README_LOGCNT
    assert log2phy.shape == (2, 12, 2)
    assert phy2log.dtype == np.int64


def test_eplb_torch_in_gives_torch_out():
    torch = pytest.importorskip("torch", reason="torch is optional")
    phy2log, log2phy, logcnt = rebalance_experts(torch.tensor(README_WEIGHT), 16, 4, 2, 8, policy="eplb")
    assert isinstance(phy2log, torch.Tensor) and phy2log.dtype == torch.int64
    assert phy2log.tolist() == README_PHY2LOG and logcnt.tolist() == README_LOGCNT


def test_eplb_lists_in_give_numpy_out():
    phy2log, _, _ = rebalance_experts(README_WEIGHT, 16, 4, 2, 8, policy="eplb")
    assert isinstance(phy2log, np.ndarray)


sizes = st.sampled_from([(8, 16, 4, 2, 4), (8, 12, 2, 1, 4), (12, 16, 4, 2, 8), (16, 24, 4, 4, 8),
                         (6, 12, 3, 2, 4), (16, 16, 1, 1, 8), (12, 24, 6, 3, 6)])


@settings(max_examples=25, deadline=None)
@given(sizes, st.integers(1, 3), st.integers(0, 2 ** 32 - 1), st.booleans())
def test_eplb_matches_the_loop_by_loop_oracle(size, layers, seed, integer):
    torch = pytest.importorskip("torch", reason="the oracle is written in torch")
    from schedc.experts.reference import reference_rebalance
    experts, replicas, groups, nodes, gpus = size
    rng = np.random.default_rng(seed)
    weight = rng.integers(0, 50, (layers, experts)) if integer else rng.lognormal(0, 1, (layers, experts))
    ours = rebalance_experts(weight, replicas, groups, nodes, gpus, policy="eplb")
    theirs = reference_rebalance(torch.tensor(weight), replicas, groups, nodes, gpus)
    for a, b in zip(ours, theirs):
        assert a.tolist() == b.tolist()


def test_eplb_plan_reports_its_loads():
    plan = plan_experts(README_WEIGHT, 16, 4, 2, 8, policy="eplb")
    assert np.allclose(plan.gpu_loads.sum(axis=1), np.sum(README_WEIGHT, axis=1))
    assert (plan.balancedness <= 1 + 1e-12).all()
    assert (plan.max_time >= plan.lower_bound - 1e-9).all()
