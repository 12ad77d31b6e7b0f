"""Pictures: SVG cells at the simulated times, a valid PNG, a Chrome trace, the DAG's .dot."""

import json
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import schedc
from schedc.cli import main
from schedc.viz.timeline import Panel, render_timeline_svg
from schedc.viz.trace import US_PER_UNIT, build_trace

ROOT = Path(__file__).parent.parent
DUALPIPE = str(ROOT / "examples" / "dualpipe.sched")
SVG = "{http://www.w3.org/2000/svg}"


def compiled_example(name="dualpipe"):
    [spec] = schedc.load(ROOT / "examples" / f"{name}.sched")
    compiled = schedc.compile(spec)
    return compiled, schedc.simulate(compiled)


def cells(svg_text):
    root = ET.fromstring(svg_text)
    return root, [g for g in root.iter(f"{SVG}g") if g.get("class") == "cell"]


@pytest.mark.parametrize("name", ["dualpipe", "zbv", "interleaved", "1f1b"])
def test_svg_has_one_cell_per_compute_instruction_at_its_simulated_time(name):
    compiled, timeline = compiled_example(name)
    root, found = cells(render_timeline_svg([Panel(compiled.spec, timeline)]))
    expected = {(r, i) for r, row in enumerate(compiled.plan.ranks) for i, x in enumerate(row) if x.is_compute}
    assert sorted((int(g.get("data-rank")), int(g.get("data-index"))) for g in found) == sorted(expected)
    scale, x0 = float(root.get("data-scale")), float(root.get("data-x0"))
    by_place = {(s.rank, s.index): s for s in timeline.slots}
    for g in found[:: max(1, len(found) // 25)]:  # a sample of coordinates
        slot = by_place[int(g.get("data-rank")), int(g.get("data-index"))]
        border = [r for r in g.iter(f"{SVG}rect") if r.get("class") in ("op", "pair")][0]
        assert float(border.get("x")) == pytest.approx(x0 + slot.start * scale, abs=0.01)
        assert float(border.get("width")) == pytest.approx((slot.end - slot.start) * scale, abs=0.01)
        assert g.find(f"{SVG}title").text.startswith(f"rank {slot.rank}:")


def test_overlapped_pairs_are_two_halves_in_one_border():
    compiled, timeline = compiled_example()
    _root, found = cells(render_timeline_svg([Panel(compiled.spec, timeline)]))
    pairs = [g for g in found if "&" in g.get("data-op")]
    assert pairs
    for g in pairs:
        rects = list(g.iter(f"{SVG}rect"))
        assert [r.get("class") for r in rects] == [None, None, "pair"]
        left, right, border = rects
        assert float(left.get("x")) + float(left.get("width")) == pytest.approx(float(right.get("x")), abs=0.02)


def test_caption_and_legend_say_what_the_picture_is():
    compiled, timeline = compiled_example()
    svg = render_timeline_svg([Panel(compiled.spec, timeline)])
    assert "makespan 66 | bubble 6 (ratio 9.1%) | peak activations 9" in svg
    for name in ("F forward", "B backward (full)", "I input-grad backward", "W weight-grad backward",
                 "overlapped F&amp;B pair"):
        assert name in svg


def test_compare_stacks_families_on_one_axis(tmp_path, capsys):
    out = tmp_path / "cmp.svg"
    assert main(["viz", DUALPIPE, "--compare", "1f1b,zb-h1,zbv,dualpipe", "-o", str(out)]) == 0
    text = out.read_text()
    _root, found = cells(text)
    assert text.count('class="cap"') == 4
    assert {g.get("data-rank") for g in found} == {str(r) for r in range(8)}


def _cairo_missing() -> bool:
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):
        return True
    return False


needs_cairo = pytest.mark.skipif(_cairo_missing(), reason="cairosvg or the cairo library is not installed")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@needs_cairo
def test_png_is_a_valid_image_of_sensible_size(tmp_path, capsys):
    out = tmp_path / "dualpipe.png"
    assert main(["viz", DUALPIPE, "-o", str(out)]) == 0
    width, height = png_size(out.read_bytes())
    assert 1000 <= width <= 4000 and 200 <= height <= 600


def test_unknown_format_is_refused_with_the_list(tmp_path, capsys):
    assert main(["viz", DUALPIPE, "-o", str(tmp_path / "x.gif")]) == 2
    assert "choose one of: .svg, .png" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()


def test_chrome_trace_has_one_slice_per_instruction_and_flows(tmp_path, capsys):
    compiled, timeline = compiled_example()
    out = tmp_path / "trace.json"
    assert main(["trace", DUALPIPE, "-o", str(out)]) == 0
    trace = json.loads(out.read_text())
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(slices) == len(timeline.slots)
    by_name = {(e["pid"], e["name"]): e for e in slices}
    for slot in timeline.slots[::37]:
        event = by_name[(slot.rank, str(slot.instr))]
        assert event["ts"] == pytest.approx(slot.start * US_PER_UNIT)
        assert event["dur"] == pytest.approx((slot.end - slot.start) * US_PER_UNIT)
    starts = [e for e in trace["traceEvents"] if e["ph"] == "s"]
    sends = sum(1 for row in compiled.plan.ranks for x in row if x.kind.value.startswith("SEND"))
    assert len(starts) == sends == sum(1 for e in trace["traceEvents"] if e["ph"] == "f")
    assert {e["pid"] for e in trace["traceEvents"] if e["ph"] == "M"} == set(range(8))


def test_trace_of_the_python_api_matches_the_cli():
    compiled, timeline = compiled_example("zb-h1")
    trace = build_trace(compiled.spec, compiled.plan, timeline)
    assert trace["otherData"]["makespan"] == timeline.makespan


def test_dag_dot_has_one_node_per_op_and_one_edge_per_dependency(tmp_path, capsys):
    out = tmp_path / "dag.dot"
    assert main(["dag", str(ROOT / "examples" / "zb-h1.sched"), "-o", str(out)]) == 0
    text = out.read_text()
    compiled, _ = compiled_example("zb-h1")
    edges = [line for line in text.splitlines() if "->" in line]
    nodes = [line for line in text.splitlines() if "fillcolor" in line and "->" not in line]
    assert len(nodes) == len(compiled.dag) and len(edges) == sum(len(p) for p in compiled.dag.preds.values())
    assert sum("dashed" in e for e in edges) == sum(
        compiled.dag.is_cross_rank(a, b) for a, b in compiled.dag.edges())
    assert text.count("subgraph cluster_rank") == 4


def test_dag_window_draws_only_the_chosen_ranks_and_microbatches(tmp_path, capsys):
    out = tmp_path / "window.dot"
    assert main(["dag", DUALPIPE, "-o", str(out), "--ranks", "0-1", "--microbatches", "0"]) == 0
    text = out.read_text()
    assert text.count("subgraph cluster_rank") == 2 and "F0.1" not in text and "F0.0" in text


def test_dag_without_the_dot_program_writes_the_source_and_says_how_to_install(tmp_path):
    out = tmp_path / "dag.svg"
    env = dict(os.environ, PATH=str(tmp_path))  # no `dot` on this PATH
    result = subprocess.run([sys.executable, "-m", "schedc", "dag", str(ROOT / "examples" / "manual.sched"),
                             "-o", str(out)], capture_output=True, text=True, env=env)
    assert result.returncode == 2  # a missing tool: not a problem in the input
    assert "apt-get install graphviz" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "dag.dot").read_text().startswith("digraph")
    assert not out.exists()


@pytest.mark.skipif(not any((Path(p) / "dot").exists() for p in os.environ.get("PATH", "").split(":")),
                    reason="the graphviz `dot` program is not installed")
def test_dag_renders_svg_through_dot(tmp_path, capsys):
    out = tmp_path / "dag.svg"
    assert main(["dag", str(ROOT / "examples" / "manual.sched"), "-o", str(out)]) == 0
    ET.fromstring(out.read_text())
