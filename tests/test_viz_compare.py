"""Comparing families on one model, and pictures that fit and tell chunks apart (issue 13,
sections 3 and 5)."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import schedc
from schedc.cli import main
from schedc.compiler import with_family
from schedc.viz.timeline import CAP_CHAR, MIN_WIDTH, PAD, Panel, render_timeline_svg

ROOT = Path(__file__).parent.parent
SVG = "{http://www.w3.org/2000/svg}"
UNEVEN = """pipeline uneven {
  ranks = 4
  microbatches = 8
  schedule = interleaved
  cost {
    F = 1  B = 2
    stage 7 { F = 3  B = 6 }   # the loss head: the last of 8 stages
  }
  memory { stage 0 { activation = 4 } }
}
"""


def spec_of(text):
    [spec] = schedc.parse(text, "uneven.sched")
    return spec


def work(spec):
    return sum(c.forward + c.backward for c in spec.costs) * spec.directions


@pytest.mark.parametrize("family", ["gpipe", "1f1b", "zb-h1", "zbv", "dualpipe", "dualpipev"])
def test_other_families_run_the_same_model_cut_differently(family):
    spec = spec_of(UNEVEN)
    other = with_family(spec, family)
    assert work(other) == pytest.approx(work(spec) * other.directions)
    assert sum(other.activations) == pytest.approx(sum(spec.activations))
    last = other.costs[-1]
    # the heavy head stays at the end of the model: in 4 stages, the last holds stages 6 and 7
    expected_last = {4: (1 + 3), 8: 3}[other.num_stages]
    assert last.forward == pytest.approx(expected_last)
    schedc.compile(other)


def test_compare_keeps_every_family_with_overrides_for_stages_others_lack(capsys, tmp_path):
    path = tmp_path / "uneven.sched"
    path.write_text(UNEVEN)
    assert main(["compare", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["skipped"] == []
    assert {r["family"] for r in result["rows"]} >= {"gpipe", "1f1b", "zb-h1", "zbv", "interleaved"}


def test_compare_skip_reason_does_not_send_the_user_to_compare(capsys):
    assert main(["compare", str(ROOT / "examples" / "1f1b.sched")]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert skipped and not any("schedc compare" in line for line in skipped)


def test_viz_compare_skips_a_family_that_does_not_fit_with_a_note(tmp_path, capsys):
    out = tmp_path / "cmp.svg"
    assert main(["viz", str(ROOT / "examples" / "1f1b.sched"), "--compare", "gpipe,1f1b,zb-h1",
                 "-o", str(out)]) == 0
    assert "note: gpipe skipped: gpipe needs 8 activations" in capsys.readouterr().err
    text = out.read_text()
    assert text.count('class="cap"') == 2 and "gpipe skipped: gpipe needs 8 activations" in text


def caption_lines(svg):
    root = ET.fromstring(svg)
    width = float(root.get("width"))
    caps = [t for t in root.iter(f"{SVG}text") if t.get("class") == "cap"]
    return width, [span.text for cap in caps for span in cap.iter(f"{SVG}tspan")]


@pytest.mark.parametrize("name,width", [("manual", None), ("manual", MIN_WIDTH), ("dualpipe", MIN_WIDTH),
                                        ("interleaved", None)])
def test_caption_is_wrapped_to_fit_the_picture(name, width):
    [spec] = schedc.load(ROOT / "examples" / f"{name}.sched")
    compiled = schedc.compile(spec)
    svg = render_timeline_svg([Panel(compiled.spec, schedc.simulate(compiled))], width=width)
    total, lines = caption_lines(svg)
    assert total >= MIN_WIDTH
    assert all(len(line) * CAP_CHAR <= total - 2 * PAD for line in lines)
    assert "makespan" in " ".join(lines) and "peak activations" in " ".join(lines)


@pytest.mark.parametrize("width", ["-5", "0", "300", str(MIN_WIDTH - 1)])
def test_widths_below_the_readable_minimum_are_refused_with_it(tmp_path, capsys, width):
    out = tmp_path / "m.svg"
    assert main(["viz", str(ROOT / "examples" / "manual.sched"), "--width", width, "-o", str(out)]) == 2
    assert f"at least {MIN_WIDTH} pixels" in capsys.readouterr().err and not out.exists()


def test_interleaved_cells_are_shaded_by_their_virtual_stage_and_labelled():
    [spec] = schedc.load(ROOT / "examples" / "interleaved.sched")
    compiled = schedc.compile(spec)
    svg = render_timeline_svg([Panel(compiled.spec, schedc.simulate(compiled))])
    root = ET.fromstring(svg)
    fills = {}
    for g in root.iter(f"{SVG}g"):
        op = g.get("data-op", "")
        match = re.fullmatch(r"F(\d+)\.(\d+)", op)
        if match:
            fills.setdefault(int(match[1]) // spec.ranks, set()).add(g.find(f"{SVG}rect").get("fill"))
    assert len(fills) == 2 and all(len(f) == 1 for f in fills.values()) and fills[0] != fills[1]
    labels = [t.text for t in root.iter(f"{SVG}text") if "lbl" in (t.get("class") or "")]
    assert len(labels) >= len(compiled.plan.ranks) * spec.microbatches  # every F cell at least
    _width, lines = caption_lines(svg)
    assert "interleaved, interleaved" not in " ".join(lines)
    assert "2 stages per rank" in " ".join(lines)


@pytest.mark.parametrize("scale", ["0", "-2", "nan"])
def test_png_scale_must_be_positive(tmp_path, capsys, scale):
    out = tmp_path / "m.png"
    assert main(["viz", str(ROOT / "examples" / "manual.sched"), "--scale", scale, "-o", str(out)]) == 2
    assert "--scale must be a positive factor" in capsys.readouterr().err and not out.exists()
