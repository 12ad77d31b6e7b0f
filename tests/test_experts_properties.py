"""Invariants of every plan, over random sizes and loads (hypothesis)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from schedc.experts import plan_experts
from schedc.experts.planner import has_duplicates


@st.composite
def problems(draw):
    nodes = draw(st.sampled_from([1, 2, 4]))
    gpus = nodes * draw(st.integers(1, 4))
    groups = nodes * draw(st.integers(1, 3))
    experts = groups * draw(st.integers(1, 4))
    per_gpu = draw(st.integers(max(1, -(-experts // gpus)), -(-experts // gpus) + 3))
    replicas = gpus * per_gpu
    layers = draw(st.integers(1, 3))
    skew = draw(st.sampled_from([0.0, 0.5, 1.5, 3.0]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    weight = np.random.default_rng(seed).lognormal(0, skew, (layers, experts)).round(2)
    if draw(st.booleans()):
        weight[:, 0] = 0
    return weight, replicas, groups, nodes, gpus


def check_plan(plan, weight, replicas, gpus):
    layers, experts = weight.shape
    assert plan.phy2log.shape == (layers, replicas)
    assert (plan.logcnt >= 1).all()
    assert (plan.logcnt.sum(axis=1) == replicas).all()
    for layer in range(layers):
        counts = np.bincount(plan.phy2log[layer], minlength=experts)
        assert counts.tolist() == plan.logcnt[layer].tolist()  # each expert logcnt times
        for expert in range(experts):
            slots = plan.log2phy[layer, expert]
            real = slots[slots >= 0]
            assert len(real) == plan.logcnt[layer, expert]
            assert (plan.phy2log[layer, real] == expert).all()  # log2phy and phy2log agree
            assert (slots[len(real):] == -1).all()
    assert plan.gpu_loads.shape == (layers, gpus)  # R/M slots per GPU by construction of the layout
    assert np.allclose(plan.gpu_loads.sum(axis=1), weight.sum(axis=1))


def groups_stay_on_nodes(plan, groups, nodes, gpus):
    layers, replicas = plan.phy2log.shape
    size = plan.logcnt.shape[1] // groups
    node_of_slot = np.arange(replicas) // (replicas // nodes)
    for layer in range(layers):
        group_of_slot = plan.phy2log[layer] // size
        for group in range(groups):
            assert len(set(node_of_slot[group_of_slot == group])) == 1


@settings(max_examples=60, deadline=None)
@given(problems())
def test_plans_keep_every_invariant_and_best_never_loses(problem):
    weight, replicas, groups, nodes, gpus = problem
    eplb = plan_experts(weight, replicas, groups, nodes, gpus, policy="eplb")
    check_plan(eplb, weight, replicas, gpus)
    best = plan_experts(weight, replicas, groups, nodes, gpus, policy="best", allow_duplicates=True)
    check_plan(best, weight, replicas, gpus)
    assert (best.max_time <= eplb.max_time * (1 + 1e-9) + 1e-9).all()
    assert (best.max_time >= best.lower_bound * (1 - 1e-9) - 1e-9).all()
    if groups % nodes == 0:
        groups_stay_on_nodes(eplb, groups, nodes, gpus)
        groups_stay_on_nodes(best, groups, nodes, gpus)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_best_without_duplicates_puts_no_two_replicas_on_a_gpu(problem):
    weight, replicas, groups, nodes, gpus = problem
    if (weight.shape[1] // nodes) * (gpus // nodes) < replicas // nodes:
        return  # impossible: checked by the error tests
    best = plan_experts(weight, replicas, groups, nodes, gpus)
    check_plan(best, weight, replicas, gpus)
    assert not has_duplicates(best.phy2log, gpus).any()
    eplb = plan_experts(weight, replicas, groups, nodes, gpus, policy="eplb")
    fair = ~has_duplicates(eplb.phy2log, gpus)  # where DeepSeek's plan is admissible too
    assert (best.max_time[fair] <= eplb.max_time[fair] * (1 + 1e-9) + 1e-9).all()
    groups_stay_on_nodes(best, groups, nodes, gpus)


@settings(max_examples=30, deadline=None)
@given(problems())
def test_global_policy_when_asked(problem):
    weight, replicas, groups, nodes, gpus = problem
    best = plan_experts(weight, replicas, groups, nodes, gpus, hierarchical=False, allow_duplicates=True)
    assert not best.hierarchical
    check_plan(best, weight, replicas, gpus)


@settings(max_examples=25, deadline=None)
@given(problems(), st.integers(0, 6), st.integers(0, 2 ** 32 - 1))
def test_migrated_plans_keep_every_invariant(problem, budget, seed):
    weight, replicas, groups, nodes, gpus = problem
    drift = weight * np.random.default_rng(seed).lognormal(0, 0.3, weight.shape)
    before = plan_experts(weight, replicas, groups, nodes, gpus, allow_duplicates=True)
    for max_moves in (None, budget):
        after = plan_experts(drift, replicas, groups, nodes, gpus, allow_duplicates=True,
                             previous=before.phy2log, max_moves=max_moves)
        check_plan(after, drift, replicas, gpus)
        assert after.moves.tolist() == (after.phy2log != before.phy2log).sum(axis=1).tolist()
        if max_moves is not None:
            assert (after.moves <= max_moves).all()
        if groups % nodes == 0:
            groups_stay_on_nodes(after, groups, nodes, gpus)
