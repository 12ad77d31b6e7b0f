"""Bad arguments from Python: a SchedError whose message names the argument and what is allowed
(the command line's messages are pinned by tests/test_experts_cli.py's golden files)."""

import numpy as np
import pytest

from schedc.balance import plan_experts, rebalance_experts
from schedc.errors import SchedError

W = np.arange(1, 9, dtype=float).reshape(1, 8)


@pytest.mark.parametrize("call,words", [
    (lambda: plan_experts(W, 10, 1, 1, 4), ["num_replicas", "multiple of num_gpus", "try 12"]),
    (lambda: plan_experts(W, 4, 1, 1, 4), ["num_replicas", "less than the 8 experts"]),
    (lambda: plan_experts(W, 8, 3, 1, 4), ["num_groups", "divide the 8 experts"]),
    (lambda: plan_experts(W, 12, 1, 4, 6), ["num_gpus", "multiple of num_nodes"]),
    (lambda: plan_experts(W, 8, 2, 4, 4, hierarchical=True), ["hierarchical", "num_groups", "num_nodes"]),
    (lambda: plan_experts(W, 8, 1, 1, 4, policy="greedy"), ["policy", "best, eplb"]),
    (lambda: plan_experts(-W, 8, 1, 1, 4), ["weight[0, 0]", ">= 0"]),
    (lambda: plan_experts([[1.0, float("nan")]], 2, 1, 1, 2), ["weight[0, 1]", "nan"]),
    (lambda: plan_experts(np.ones((2, 2, 2)), 8, 1, 1, 4), ["[layers, experts]", "[2, 2, 2]"]),
    (lambda: plan_experts(W, 8, 1, 1, 0), ["num_gpus", "positive integer"]),
    (lambda: plan_experts(W, 8, 1, 1, 4, speeds=[1, 1]), ["speeds", "one per GPU"]),
    (lambda: plan_experts(W, 8, 1, 1, 4, speeds=[1, 1, 0, 1]), ["speeds", "> 0"]),
    (lambda: plan_experts(W, 12, 1, 1, 4, previous=np.zeros((1, 8))), ["previous", "[1, 12]"]),
    (lambda: plan_experts(W, 8, 1, 1, 4, previous=[[0, 1, 2, 3, 4, 5, 6, 6]]), ["expert 7 has no slot"]),
    (lambda: plan_experts(W, 8, 1, 1, 4, previous=[list(range(8))], max_moves=-1), ["max_moves", ">= 0"]),
    (lambda: plan_experts(W, 8, 1, 1, 4, max_moves=2), ["max_moves needs the previous placement"]),
    (lambda: plan_experts(W, 40, 1, 1, 4), ["two replicas", "allow_duplicates=True"]),
    (lambda: rebalance_experts("loads", 8, 1, 1, 4), ["weight"]),
])
def test_bad_arguments_are_named(call, words):
    with pytest.raises(SchedError) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_duplicates_allowed_when_asked():
    plan = plan_experts(W, 40, 1, 1, 4, allow_duplicates=True)
    assert plan.logcnt.sum() == 40
