"""The JSON layer description: defaults, repeats, and located errors (golden files)."""

import json
from pathlib import Path

import pytest

from schedc.partition.layers_json import read_layers_json
from schedc.errors import SchedError, SourceFile, render_error

GOLDEN = Path(__file__).parent / "golden" / "partition"


def test_repeat_expands_and_defaults_follow_the_simple_model():
    text = json.dumps([{"name": "embed", "F": 3, "B": 6, "W": 3, "activation": 1, "params": 10},
                       {"name": "layers", "F": 1, "repeat": 3, "params": 4},
                       {"name": "head", "F": 5, "activation": 2}])
    model = read_layers_json(text, "m.json")
    assert model.names == ("embed", "layers.0", "layers.1", "layers.2", "head")
    block = model.layers[1]
    assert (block.forward, block.backward, block.weight, block.params) == (1, 2, 1, 4)
    assert [x.kind for x in model.layers] == ["E", "t", "t", "t", "L"]
    assert model.layers[-1].activation == 2


def test_object_with_a_layers_key_is_accepted():
    model = read_layers_json('{"layers": [{"name": "a", "F": 1}, {"name": "b", "F": 2}]}')
    assert model.names == ("a", "b")


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_error_goldens(case, update_goldens):
    path = GOLDEN / f"{case}.json"
    text = path.read_text()
    with pytest.raises(SchedError) as caught:
        read_layers_json(text, path.name)
    got = render_error(caught.value, SourceFile(path.name, text)) + "\n"
    want = GOLDEN / f"{case}.out"
    if update_goldens or not want.exists():
        want.write_text(got)
    assert got == want.read_text()
