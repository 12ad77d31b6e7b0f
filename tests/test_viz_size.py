"""Pictures of a readable size, or a refusal naming the limit (issue 24, section 4): PNG scale,
very wide timelines, partition's picture, labels that fit, outputs in folders that exist."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from schedc.cli import main
from schedc.viz.png import MAX_SIDE
from schedc.viz.timeline import CELL, MIN_CELL, MIN_WIDTH, WIDE

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
SVG = "{http://www.w3.org/2000/svg}"


def one_f_one_b(tmp_path, microbatches: int) -> str:
    text = (EXAMPLES / "1f1b.sched").read_text().replace("microbatches = 8", f"microbatches = {microbatches}")
    path = tmp_path / f"m{microbatches}.sched"
    path.write_text(text.replace("limit = 4", "limit = 40"))
    return str(path)


def typical_cell(svg_text: str) -> float:
    """The median width of the cells' borders, in pixels."""
    widths = sorted(float(w) for w in re.findall(r'class="(?:op|pair)" x="[\d.]+" y="[\d.]+" width="([\d.]+)"',
                                                 svg_text))
    return widths[len(widths) // 2]


def test_png_scale_past_the_limit_is_refused_with_the_scale_that_fits(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["viz", str(EXAMPLES / "1f1b.sched"), "-o", str(out), "--scale", "1000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("schedc: error: --scale 1000 would make a ") and f"{MAX_SIDE:,} pixels" in err
    fits = float(re.search(r"--scale ([\d.]+) or less fits", err)[1])
    assert not out.exists()
    pytest.importorskip("cairosvg")
    assert main(["viz", str(EXAMPLES / "1f1b.sched"), "-o", str(out), "--scale", str(fits)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_timeline_too_wide_to_read_is_refused_naming_the_limit(tmp_path, capsys):
    out = tmp_path / "wide.svg"
    assert main(["viz", one_f_one_b(tmp_path, 5000), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("schedc: error: this timeline") and f"at most {MAX_SIDE:,} pixels" in err
    assert "--width" in err and err.count("\n") == 1 and not out.exists()


def test_a_long_timeline_is_drawn_at_a_readable_width(tmp_path, capsys):
    out = tmp_path / "long.svg"
    assert main(["viz", one_f_one_b(tmp_path, 500), "-o", str(out)]) == 0
    text = out.read_text()
    assert float(ET.fromstring(text).get("width")) <= WIDE
    assert typical_cell(text) >= MIN_CELL


def test_width_past_the_limit_is_refused(tmp_path, capsys):
    out = tmp_path / "w.svg"
    assert main(["viz", str(EXAMPLES / "1f1b.sched"), "-o", str(out), "--width", str(MAX_SIDE + 1)]) == 2
    assert f"over the limit of {MAX_SIDE:,} pixels" in capsys.readouterr().err


def test_partition_picture_is_sized_by_its_ops_not_its_time_units(tmp_path, capsys):
    out = tmp_path / "p.svg"
    assert main(["partition", str(EXAMPLES / "partition" / "llama.json"), "--ranks", "4",
                 "--microbatches", "8", "--viz", str(out)]) == 0
    text = out.read_text()
    width = float(ET.fromstring(text).get("width"))
    assert MIN_WIDTH <= width <= 1600  # was 3,688 pixels for 4 x 8
    assert typical_cell(text) >= CELL * 0.9


def test_output_in_a_missing_folder_is_refused_and_no_folder_made(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "x.png"
    assert main(["viz", str(EXAMPLES / "1f1b.sched"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"schedc: error: cannot write '{out}': the folder '{out.parent}' does not exist "
                   "(schedc creates no folders; make it first, or choose another path)\n")
    assert not (tmp_path / "no").exists()
    assert main(["compile", str(EXAMPLES / "1f1b.sched"), "-o", str(out.with_suffix(".txt"))]) == 2
    assert not (tmp_path / "no").exists()


def test_zbv_panels_of_a_comparison_label_two_digit_microbatches(tmp_path, capsys):
    out = tmp_path / "cmp.svg"
    assert main(["viz", str(EXAMPLES / "dualpipe.sched"), "--compare", "1f1b,zb-h1,zbv,dualpipe",
                 "-o", str(out)]) == 0
    root = ET.fromstring(out.read_text())
    cells = [g for g in root.iter(f"{SVG}g") if g.get("class") == "cell"]
    unlabelled = [g.get("data-op") for g in cells
                  if not any("lbl" in (t.get("class") or "") for t in g.iter(f"{SVG}text"))]
    assert unlabelled == []
    labels = {t.text for g in cells for t in g.iter(f"{SVG}text")}
    assert {"10", "19"} <= labels


def test_narrow_cells_keep_their_labels_in_a_smaller_font(tmp_path, capsys):
    out = tmp_path / "narrow.svg"
    assert main(["viz", str(EXAMPLES / "dualpipe.sched"), "--width", "900", "-o", str(out)]) == 0
    root = ET.fromstring(out.read_text())
    small = [t.text for t in root.iter(f"{SVG}text") if "sm" in (t.get("class") or "").split()]
    assert small and all(len(text) == 2 for text in small)  # "3r": too wide for the usual font here
    cells = [g for g in root.iter(f"{SVG}g") if g.get("class") == "cell"]
    assert all(any(t.text for t in g.iter(f"{SVG}text")) for g in cells)
