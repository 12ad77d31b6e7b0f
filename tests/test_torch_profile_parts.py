"""`schedc run --profile` of a model whose stages declare chunk parts (issue 20, part 5): each part
timed alone, the all-to-alls on a real EP group, printed as a `chunk { }` block (in `#` lines) that
parses as the .sched language's chunk cost block."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # spawns EP processes: slow

import schedc  # noqa: E402
from schedc.backends.torch.model_file import load_model  # noqa: E402
from schedc.backends.torch.profile.chunk_parts import chunk_cost_block, declares_parts, profile_parts  # noqa: E402

ROOT = Path(__file__).parent.parent
MOE = str(ROOT / "examples" / "models" / "moe.py")
PARTS = ["attention", "dispatch", "mlp", "combine", "mix"]


def block_of(printed: str) -> str:
    """The chunk cost block in the `#` lines `chunk_cost_block` prints."""
    lines = printed[printed.index("#   cost {"):].splitlines()
    return "\n".join(line[4:] for line in lines if line.startswith("#   "))


def test_only_a_model_with_parts_declares_them():
    assert declares_parts(load_model(MOE), 2)
    assert not declares_parts(load_model(str(ROOT / "examples" / "models" / "mlp.py")), 2)


@pytest.mark.parametrize("members", [1, 2])
def test_every_part_is_timed_and_the_block_parses(members):
    measured = profile_parts(MOE, 2, "float64", members, repeats=2)
    assert sorted(measured) == [0, 1]
    parts, timings = measured[0]
    assert [name for name, _ in parts][:5] == PARTS and dict(parts)["dispatch"] and not dict(parts)["mlp"]
    assert {(section, name) for section, name, _ in timings} >= {("F", n) for n in PARTS} | {("B", n) for n in PARTS}
    assert len([t for t in timings if t[:2] == ("F", "mlp")]) == 2 * members * len(parts) // len(PARTS)
    printed = chunk_cost_block(measured, members)
    assert ("on 2 gloo processes" in printed) is (members == 2) and all(line.startswith("#") for line in
                                                                       printed.splitlines())
    [spec] = schedc.parse(f"pipeline p {{ ranks = 2 microbatches = 4 schedule = 1f1b {block_of(printed)} }}", "p.sched")
    cost = spec.cost(0)
    assert cost.forward > 0 and cost.backward > 0 and 0 <= cost.weight <= cost.backward


def test_profile_of_a_parts_model_prints_the_chunk_block_beside_its_cost_block(capsys):
    from schedc.cli import main
    argv = ["run", str(ROOT / "examples" / "1f1b.sched"), "--model", MOE, "--profile", "--repeats", "4",
            "--bandwidth", "10", "--profile-alone", "--calibrate", "0", "--ep", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "# chunk parts, each run alone" in printed and "--ep 2" in printed
    block = printed[printed.index("\ncost {") + 1:]
    assert all(line.startswith("#") for line in printed[:printed.index("\ncost {")].splitlines())
    schedc.parse(f"pipeline p {{ ranks = 4 microbatches = 8 schedule = 1f1b {block} }}", "p.sched")
    schedc.parse(f"pipeline p {{ ranks = 4 microbatches = 8 schedule = 1f1b {block_of(printed)} }}", "q.sched")
