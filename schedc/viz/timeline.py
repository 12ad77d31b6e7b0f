"""The simulated timeline as SVG: ranks as rows, time left to right to scale.

One cell (`<g class="cell">`) per compute instruction, placed at its simulated start and end, with
a `<title>` tooltip; an OVERLAP is its two halves (forward, backward) inside one shared border.
Several timelines (`schedc viz --compare`) stack on one time axis. A timeline with a link has a
thin communication lane under each rank (LANE pixels): each transfer a bar (`<rect class="xfer">`)
on the lanes of its sender and its receiver. The SVG is written directly;
PNG comes from it through cairosvg (viz/png.py). Sized by default, a typical op is CELL pixels wide
(narrower, down to MIN_CELL, past WIDE pixels); a picture over MAX_SIDE pixels a side is refused
(`PictureTooLarge`, saying what to change), and a label too wide for its cell takes a smaller font.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..ir import Instr, OpKind, format_instr
from ..simulate import Timeline, instr_cost
from ..lang.spec import PipelineSpec
from .png import MAX_SIDE, PictureTooLarge

COLORS = {OpKind.F: "#4e79a7", OpKind.B: "#e15759", OpKind.I: "#f28e2b", OpKind.W: "#59a14f",
          OpKind.R: "#9c6ade"}
REVERSE_COLORS = {OpKind.F: "#9fc3e7", OpKind.B: "#f4a6a7", OpKind.I: "#f9c48d", OpKind.W: "#a6d49a",
                  OpKind.R: "#d3bdf0"}
NAMES = {OpKind.F: "forward", OpKind.B: "backward (full)", OpKind.I: "input-grad backward",
         OpKind.W: "weight-grad backward", OpKind.R: "recompute (before its backward)"}
ROW, LABEL, PAD, CHAR = 26, 64, 12, 6.2  # row height, rank label width, padding, px per char
CAP_CHAR, CAP_LINE, LEG_ROW = 7.9, 17, 18  # caption px per char (13px bold), caption line, legend row
CHUNK_DARKEN = 0.4  # the last chunk of a rank is its kind's color 40% of the way to black
MIN_WIDTH = 420  # narrower, the legend's longest entry, the rank labels and a few cells do not fit
CELL = 28  # pixels for a typical op (the median over the panels) in a picture sized by default
WIDE = 3600  # pixels: a default picture grows to this width, then its cells narrow toward MIN_CELL
MIN_CELL = 3  # pixels: narrower typical ops blur into bars; a default picture that needs them is refused
SMALL_CHAR = 5.1  # px per char of a cell label in the small font, for cells too narrow for the usual one
LANE = 8  # pixels: the communication lane under each rank of a timeline with a link
XFER_COLOR = "#76b7b2"


@dataclass(frozen=True)
class Panel:
    """One timeline to draw: its spec (for labels and the caption) and its simulation."""

    spec: PipelineSpec
    timeline: Timeline


def _typical_op(panels: list[Panel]) -> float:
    """The median length of a compute op over every panel (in a comparison ZB-V's ops are half of
    1F1B's: their labels then take the small font)."""
    lengths = sorted(s.end - s.start for p in panels for s in p.timeline.slots if s.end > s.start)
    return lengths[len(lengths) // 2] if lengths else 1.0


def _scale(panels: list[Panel], makespan: float, width: int | None) -> float:
    """Pixels per time unit. With `width`, the time axis fills it. By default a typical op gets
    CELL pixels (its microbatch label fits); past WIDE pixels the ops narrow, down to MIN_CELL;
    a picture still wider than MAX_SIDE is refused (`PictureTooLarge`) with what to change."""
    room, makespan = LABEL + 2 * PAD, max(makespan, 1e-9)
    if width:
        return (width - room) / makespan
    typical = _typical_op(panels)
    scale = CELL / typical
    if makespan * scale + room > WIDE:
        scale = max((WIDE - room) / makespan, MIN_CELL / typical)
    if makespan * scale + room > MAX_SIDE:
        busiest = max(len(p.timeline.slots) // max(p.spec.ranks, 1) for p in panels)
        raise PictureTooLarge(
            f"this timeline (about {busiest:,} ops a rank) would be {makespan * scale + room:,.0f} "
            f"pixels wide with a typical op {MIN_CELL} pixels wide; pictures are at most {MAX_SIDE:,} "
            "pixels a side: draw fewer microbatches (the steady state repeats), or give --width (at "
            f"most {MAX_SIDE:,}) to draw the ops narrower")
    return scale


def chunk_of(spec: PipelineSpec, op: Instr) -> int:
    """Which of its rank's stages (virtual stages, chunks) `op` runs: 0 for the rank's first
    stage in model order, up to chunks - 1 (interleaved: stage // ranks; V: 0 going down, 1 back)."""
    return op.stage // spec.ranks if spec.chunks > 1 else 0


def _darken(color: str, amount: float) -> str:
    """`color` (#rrggbb) moved `amount` (0..1) of the way to black."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c * (1 - amount)):02x}" for c in rgb)


def _fill(spec: PipelineSpec, op: Instr) -> str:
    """The kind's color; direction 1 light; a rank's later chunks progressively darker, so the
    virtual stages of an interleaved or V pipeline tell apart at a glance (and from direction 1)."""
    if op.direction:
        return REVERSE_COLORS[op.kind]
    return _darken(COLORS[op.kind], CHUNK_DARKEN * chunk_of(spec, op) / max(1, spec.chunks - 1))


def _label(op: Instr) -> str:
    """The microbatch; `r` marks direction 1. Which of its rank's stages a cell runs is its shade
    (`_fill`), and the tooltip names the stage."""
    return f"{op.microbatch}{'r' if op.direction else ''}"


def _tooltip(slot, op: Instr | None = None) -> str:
    parts = slot.instr.parts if slot.instr.kind is OpKind.OVERLAP else (slot.instr,)
    ops = "; ".join(f"{format_instr(p)}: {NAMES[p.kind]}, stage {p.stage}, microbatch {p.microbatch}"
                    + (", direction 1" if p.direction else "") for p in parts)
    kind = "overlapped pair " if slot.instr.kind is OpKind.OVERLAP else ""
    return f"rank {slot.rank}: {kind}{ops}; start {slot.start:g}, end {slot.end:g}"


def _halves(spec: PipelineSpec, slot, x: float, w: float) -> list[tuple[Instr, float, float]]:
    """(op, x, width) of each drawn part: one for a plain op, two for an overlapped pair, split in
    proportion to the parts' own costs."""
    if slot.instr.kind is not OpKind.OVERLAP:
        return [(slot.instr, x, w)]
    forward, backward = slot.instr.parts
    f, b = instr_cost(spec, forward), instr_cost(spec, backward)
    wf = w * f / (f + b) if f + b else w / 2
    return [(forward, x, wf), (backward, x + wf, w - wf)]


def _cell(spec: PipelineSpec, slot, x0: float, y: float, scale: float) -> str:
    x, w = x0 + slot.start * scale, max((slot.end - slot.start) * scale, 0.5)
    out = [f'<g class="cell" data-rank="{slot.rank}" data-index="{slot.index}" '
           f'data-start="{slot.start:g}" data-end="{slot.end:g}" data-op="{escape(format_instr(slot.instr))}">',
           f"<title>{escape(_tooltip(slot))}</title>"]
    for op, hx, hw in _halves(spec, slot, x, w):
        out.append(f'<rect x="{hx:.2f}" y="{y + 2:.2f}" width="{hw:.2f}" height="{ROW - 4}" '
                   f'fill="{_fill(spec, op)}"/>')
        text = _label(op)
        small = " sm" if hw < len(text) * CHAR + 2 else ""  # the small font where the usual does not fit
        if hw >= len(text) * (SMALL_CHAR if small else CHAR) + 1:
            css = ("lbl dark" if op.direction else "lbl") + small
            out.append(f'<text x="{hx + hw / 2:.2f}" y="{y + ROW / 2 + 4:.2f}" class="{css}">{escape(text)}</text>')
    border = "pair" if slot.instr.kind is OpKind.OVERLAP else "op"
    out.append(f'<rect class="{border}" x="{x:.2f}" y="{y + 2:.2f}" width="{w:.2f}" height="{ROW - 4}"/>')
    out.append("</g>")
    return "".join(out)


def _lane_bars(panel: Panel, x0: float, y: float, pitch: float, scale: float) -> list[str]:
    """The transfers of a linked timeline as bars on the lanes of their two ends."""
    out = []
    for t in panel.timeline.transfers:
        x, w = x0 + t.start * scale, max((t.end - t.start) * scale, 0.5)
        tip = escape(f"{format_instr(t.instr)}'s output, rank {t.sender} -> rank {t.receiver}: "
                     f"start {t.start:g}, end {t.end:g}")
        for rank in (t.sender, t.receiver):
            out.append(f'<rect class="xfer" x="{x:.2f}" y="{y + pitch * rank + ROW - 1:.2f}" '
                       f'width="{w:.2f}" height="{LANE - 2}" fill="{XFER_COLOR}" stroke="#ffffff" '
                       f'stroke-width="0.4"><title>{tip}</title></rect>')
    return out


def _caption(panel: Panel) -> str:
    """What the panel shows, its parts separated by " | " (where it wraps when narrow)."""
    spec, t = panel.spec, panel.timeline
    peak = max(r.peak_activations for r in t.ranks)
    layout = "" if spec.placement == spec.schedule else f", {spec.placement} placement"
    if spec.chunks > 1:
        layout += f", {spec.chunks} stages per rank (darker: later ones)"
    lane = (f" | waited on transfers {max(r.lane_exposed for r in t.ranks):g} (the most of a rank)"
            if t.linked else "")
    return (f"{spec.name}: {spec.schedule}{layout} | {spec.ranks} ranks x {spec.microbatches} "
            f"microbatches | makespan {t.makespan:g} | bubble {t.bubble:g} "
            f"(ratio {t.bubble_ratio:.1%}) | peak activations {peak:g}{lane}")


def wrap_caption(text: str, width: float, char: float = CAP_CHAR) -> list[str]:
    """`text` in lines of at most `width` pixels: whole " | " parts where they fit, else words."""
    room = max(8, int(width / char))
    lines: list[str] = []
    for part in text.split(" | "):
        joined = f"{lines[-1]} | {part}" if lines else part
        if lines and len(joined) <= room:
            lines[-1] = joined
            continue
        lines += _words_to_lines(part, room)
    return lines


def _words_to_lines(text: str, room: int) -> list[str]:
    lines = [""]
    for word in text.split(" "):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > room:
            lines.append("")
        lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
    return lines


def _caption_svg(x: float, y: float, lines: list[str]) -> str:
    spans = "".join(f'<tspan x="{x}" dy="{0 if i == 0 else CAP_LINE}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text x="{x}" y="{y + 12}" class="cap">{spans}</text>'


def _axis(x0: float, y: float, makespan: float, scale: float) -> list[str]:
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10 ** 9)
                if s * scale >= 40)
    out = [f'<line x1="{x0}" y1="{y}" x2="{x0 + makespan * scale:.2f}" y2="{y}" class="axis"/>']
    t = 0
    while t <= makespan + 1e-9:
        x = x0 + t * scale
        out.append(f'<line x1="{x:.2f}" y1="{y}" x2="{x:.2f}" y2="{y + 4}" class="axis"/>'
                   f'<text x="{x:.2f}" y="{y + 15}" class="tick">{t:g}</text>')
        t += step
    return out


def _legend_items(kinds: list[OpKind], has_overlap: bool, has_reverse: bool, has_chunks: bool,
                  has_lane: bool = False):
    """(swatch fill, swatch class, text) of each legend entry."""
    items = [(COLORS[k], "", f"{k.value} {NAMES[k]}") for k in kinds]
    if has_lane:
        items.append((XFER_COLOR, "", "transfer on the link (lane under each rank)"))
    if has_overlap:
        items.append(("#ffffff", "pair", "overlapped F&B pair"))
    if has_reverse:
        items.append((REVERSE_COLORS[OpKind.F], "", "light: direction 1"))
    if has_chunks:
        items.append((_darken(COLORS[OpKind.F], CHUNK_DARKEN), "", "darker: a later stage of the rank"))
    return items


def _legend(x0: float, y: float, right: float, items) -> tuple[list[str], float]:
    """The legend's SVG, its entries flowing into as many rows as `right` needs; and its height."""
    out, x, rows = [], x0, 1
    for fill, css, text in items:
        width = 16 + len(text) * CHAR + 14
        if x > x0 and x + width - 14 > right:
            x, y, rows = x0, y + LEG_ROW, rows + 1
        swatch_class = f' class="{css}"' if css else ""
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{fill}"{swatch_class}/>'
                   f'<text x="{x + 16}" y="{y + 10}" class="leg">{escape(text)}</text>')
        x += width
    return out, rows * LEG_ROW


_STYLE = ("<style>text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;fill:#222}"
          ".lbl{font-size:10px;text-anchor:middle;fill:#fff}.sm{font-size:8px}.dark{fill:#222}.tick{font-size:10px;text-anchor:middle}"
          ".leg{font-size:11px}.note{font-size:11px;fill:#8a4b00}.cap{font-size:13px;font-weight:bold}.rank{font-size:11px}"
          ".op{fill:none;stroke:#ffffff;stroke-width:0.6}.pair{fill:none;stroke:#222;stroke-width:1.6}"
          ".axis{stroke:#555;stroke-width:1}.row{fill:#f4f4f4}</style>")


def render_timeline_svg(panels: list[Panel], width: int | None = None, notes: tuple[str, ...] = ()) -> str:
    """The SVG of one or more timelines on one time axis (the longest sets the scale), at least
    MIN_WIDTH wide; legend, captions and `notes` (printed under the axis) wrap to the width."""
    makespan = max(p.timeline.makespan for p in panels)
    scale = _scale(panels, makespan, width)
    x0 = LABEL + PAD
    total_w = max(x0 + makespan * scale + PAD, MIN_WIDTH)
    slots = [(p.spec, s) for p in panels for s in p.timeline.slots]
    kinds = sorted({op.kind for _, s in slots for op in (s.instr.parts or (s.instr,))},
                   key=lambda k: "FRBIW".index(k.value))
    items = _legend_items(kinds, any(s.instr.kind is OpKind.OVERLAP for _, s in slots),
                          any(p.spec.directions == 2 for p in panels), any(p.spec.chunks > 1 for p in panels),
                          any(p.timeline.linked for p in panels))
    body, height = _legend(PAD, PAD, total_w - PAD, items)
    y = PAD + height + 8
    for panel in panels:
        lines = wrap_caption(_caption(panel), total_w - 2 * PAD)
        body.append(_caption_svg(PAD, y, lines))
        y += 20 + CAP_LINE * (len(lines) - 1)
        pitch = ROW + (LANE if panel.timeline.linked else 0)
        for rank in range(panel.spec.ranks):
            body.append(f'<rect x="{x0}" y="{y + pitch * rank + 1}" width="{makespan * scale:.2f}" '
                        f'height="{ROW - 2}" class="row"/>'
                        f'<text x="{PAD}" y="{y + pitch * rank + ROW / 2 + 4}" class="rank">rank {rank}</text>')
        body += [_cell(panel.spec, s, x0, y + pitch * s.rank, scale) for s in panel.timeline.slots]
        body += _lane_bars(panel, x0, y, pitch, scale)
        y += pitch * panel.spec.ranks + 6
    body += _axis(x0, y, makespan, scale)
    y += 24
    for note in notes:
        lines = wrap_caption(note, total_w - 2 * PAD, CHAR * 1.1)
        spans = "".join(f'<tspan x="{PAD}" dy="{0 if i == 0 else 14}">{escape(line)}</tspan>'
                        for i, line in enumerate(lines))
        body.append(f'<text x="{PAD}" y="{y + 10}" class="note">{spans}</text>')
        y += 14 * len(lines) + 4
    total_h = y
    if total_h > MAX_SIDE:
        raise PictureTooLarge(f"this timeline would be {total_h:,.0f} pixels tall ({sum(p.spec.ranks for p in panels)} "
                              f"rank rows); pictures are at most {MAX_SIDE:,} pixels a side: compare "
                              "fewer families, or draw a pipeline with fewer ranks")
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
            f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" data-scale="{scale:g}" data-x0="{x0}">')
    return "".join([head, _STYLE, '<rect width="100%" height="100%" fill="#ffffff"/>', *body, "</svg>\n"])
