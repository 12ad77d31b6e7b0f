"""`build_layers()` models: layers grouped into stages by the chosen split, a located error for a
layer the model file does not define, and `schedc run --check` (gloo, 2 ranks) passing."""

import os
from pathlib import Path

import pytest

import schedc
from schedc.cli import main

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torchrun  # the torch backend: slow; skip locally with -m 'not torchrun'

from schedc.backends.torch.model_file import load_model  # noqa: E402
from schedc.backends.torch.layers import stage_builder  # noqa: E402
from test_torch_backend import launch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "layers_mlp.py"
SCHED = ROOT / "examples" / "partition" / "mlp_layers.sched"
GOLDEN = Path(__file__).parent / "golden" / "partition" / "run"


def test_stages_compose_to_the_whole_model_in_order():
    [spec] = schedc.load(SCHED)
    model = load_model(str(MODEL))
    stages = stage_builder(model, spec)(spec.num_stages)
    sizes = [b - a for a, b in zip(spec.layers.bounds, spec.layers.bounds[1:])]
    assert [len(s) for s in stages] == sizes
    x = torch.randn(3, 16, dtype=torch.float64)
    whole, staged = x, x
    for _name, layer in model.build_layers():
        whole = layer.to(torch.float64)(whole)
    for stage in stages:
        staged = stage.to(torch.float64)(staged)
    assert torch.equal(whole, staged)


def test_a_layer_the_model_does_not_define_is_a_located_error(capsys):
    cwd = os.getcwd()
    os.chdir(GOLDEN)
    try:
        status = main(["run", "missing_layer.sched", "--model", str(MODEL), "--device", "cpu"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("missing_layer.sched:8:5: error: layer 'lm_head' is not defined by the model "
                          "file's build_layers()")
    assert "^^^" in err


def test_the_ranks_run_check_passes_for_a_model_given_as_layers():
    """What `schedc run FILE --model M --check` starts under torchrun, started directly (gloo, 2
    ranks) to keep the test fast: each rank chooses the same split, groups build_layers() by it,
    and the step matches the single-process run."""
    codes, outputs, _seconds = launch([SCHED, SCHED], model=str(MODEL),
                                      extra=("--check", "--device", "cpu", "--timeout", "60"))
    assert codes == [0, 0], outputs
    assert "PASS" in outputs[0]


def test_profiled_layers_are_a_description_the_partitioner_reads():
    """`schedc run --profile` on a build_layers() model writes the JSON layer description."""
    import json

    from schedc.backends.torch.profile.layer_costs import profile_layers
    from schedc.partition.layers_json import read_layers_json

    model = load_model(str(MODEL))
    rows = profile_layers(model, torch.float64, repeats=2)
    described = read_layers_json(json.dumps(rows), "profiled.json")
    assert described.names == tuple(name for name, _m in model.build_layers())
    assert all(x.forward > 0 and 0 <= x.weight <= x.backward for x in described.layers)
    assert all(x.params > 0 for x in described.layers)  # every layer has a Linear
    assert described.layers[1].activation > 0  # a block saves its input (and Tanh its output)
