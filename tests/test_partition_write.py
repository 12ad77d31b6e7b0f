"""The writers: Megatron's layout string (round trip through our reader of it), torchtitan's
names, DeepSpeed's parts, and the .sched cost block (round trip through the parser)."""

import random

import pytest

import schedc
from schedc.lang.layers import Devices
from schedc.partition.formats import (deepspeed_parts, format_cost_block, format_megatron_layout,
                                      parse_megatron_layout, stage_letters, torchtitan_stages)
from schedc.partition.problem import PartitionProblem, family_spec, stage_activations, stage_costs
from partition_helpers import all_bounds, public_model


def test_public_split_layout_string_is_megatrons():
    bounds = (0, 3, 8, 13, 18, 23, 28, 33, 34)
    assert format_megatron_layout(public_model(), bounds) == "Et*2|(t*5|)*6L"
    assert torchtitan_stages(public_model(), bounds)[0] == ["embed", "layers.0", "layers.1"]
    assert torchtitan_stages(public_model(), bounds)[-1] == ["head"]
    assert deepspeed_parts(bounds) == list(bounds)


def test_megatrons_documented_example_parses():
    stages = parse_megatron_layout("Et*3|(tt|)*29,m|L")
    assert len(stages) == 32
    assert stages[0] == "Ettt" and stages[1:30] == ["tt"] * 29 and stages[30:] == ["m", "L"]


@pytest.mark.parametrize("seed", range(20))
def test_layout_round_trips_for_random_splits(seed):
    rng, model = random.Random(seed), public_model()
    stages = rng.randint(1, 12)
    cuts = sorted(rng.sample(range(1, len(model)), stages - 1))
    bounds = (0, *cuts, len(model))
    assert parse_megatron_layout(format_megatron_layout(model, bounds)) == stage_letters(model, bounds)


@pytest.mark.parametrize("bad", ["Et*|L", "(t|L", "t)|L", "Ex|L"])
def test_bad_layout_strings_are_refused(bad):
    with pytest.raises(ValueError):
        parse_megatron_layout(bad)


def test_cost_block_parses_back_to_the_split_costs():
    model = public_model()
    problem = PartitionProblem(model, family_spec("1f1b", 4, 8), Devices((2.0, 1.0, 1.0, 1.0), (None,) * 4))
    for bounds in list(all_bounds(len(model), 4))[::997]:
        block = format_cost_block(problem, bounds)
        [spec] = schedc.parse(f"pipeline p {{ ranks = 4 microbatches = 8\n{block}}}")
        assert spec.costs == stage_costs(problem, bounds)
        assert spec.activations == stage_activations(problem, bounds)
