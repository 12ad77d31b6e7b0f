"""Recompute in the run: a stage that recomputes runs its F without autograd and R rebuilds the
graph right before the backward; `--check` is unchanged by it (bit for bit in fp64), and
`--memory` counts what autograd really saves."""

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # starts processes: slow; skip locally with -m 'not torchrun'

from test_torch_backend import launch  # noqa: E402

from schedc.backends.torch.profile.activation_memory import ActivationTally  # noqa: E402

RECOMPUTE = "recompute = full  recompute { full { cost = 1  keeps = 0.05 } }"


def recompute_sched(tmp_path, family, recompute=RECOMPUTE):
    path = tmp_path / f"{family}.sched"
    path.write_text(f"pipeline p {{ ranks = 2 microbatches = 4 schedule = {family} {recompute} "
                    "cost { F = 1 B = 2 W = 1 } }\n")
    return path


@pytest.mark.parametrize("family", ["1f1b", "zb-h1", "zbv", "dualpipev"])
def test_recompute_trains_exactly_as_without(family, tmp_path):
    """Every loss, gradient and parameter equals the single-process run exactly (relative error 0
    in fp64: R recomputes the same values), and the plan does hold R ops."""
    from schedc.compiler import compile_spec
    from schedc.lang.spec import check_pipeline
    from schedc.lang.syntax import parse_program

    path = recompute_sched(tmp_path, family)
    [pipeline] = parse_program(path.read_text(), str(path)).pipelines
    plan = compile_spec(check_pipeline(pipeline)).plan
    assert any(instr.kind.value == "R" for row in plan.ranks for instr in row)
    codes, outputs, _ = launch([path] * 2, extra=("--check", "--steps", "2", "--memory"))
    assert codes == [0, 0], outputs
    assert "0.000e+00" in outputs[0] and "PASS" in outputs[0]
    assert "activation memory per rank" in outputs[0] and "rank 1: measured" in outputs[0]


def test_the_tally_counts_saved_storages_once_and_lets_them_go_with_the_graph():
    layer = torch.nn.Linear(8, 8).double()
    tally = ActivationTally(list(layer.parameters()))
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    with tally.saving(0):
        out = torch.tanh(layer(x))  # saves x (the Linear) and tanh's output
    unit = tally.units[0]
    assert unit == 2 * 4 * 8 * 8  # two [4, 8] fp64 storages; the weight is not counted
    tally.start_step()
    assert tally.held == pytest.approx(1.0)  # one stage activation alive
    with tally.saving(0):
        again = torch.tanh(layer(x))  # x again: its storage is already counted
    assert tally.held == pytest.approx(1.5)
    out.sum().backward()
    del out
    assert tally.held == pytest.approx(1.0)  # the first graph let go of tanh's output; x stays
    again.sum().backward()
    del again
    assert tally.held == pytest.approx(0.0) and not tally.live
    tally.hold_input(("key",), 0, torch.zeros(4, 8, dtype=torch.float64))
    assert tally.held == pytest.approx(0.5) and tally.peak >= 1.5
    tally.release_input(("key",))
    assert tally.held == pytest.approx(0.0)
