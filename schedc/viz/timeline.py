"""The simulated timeline as SVG: ranks as rows, time left to right to scale.

One cell (`<g class="cell">`) per compute instruction, placed at its simulated start and end, with
a `<title>` tooltip; an OVERLAP is its two halves (forward, backward) inside one shared border.
Several timelines (`schedc viz --compare`) stack on one time axis. The SVG is written directly;
PNG comes from it through cairosvg (viz/png.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..ir import Instr, OpKind, format_instr
from ..simulate import Timeline, instr_cost
from ..lang.spec import PipelineSpec

COLORS = {OpKind.F: "#4e79a7", OpKind.B: "#e15759", OpKind.I: "#f28e2b", OpKind.W: "#59a14f"}
REVERSE_COLORS = {OpKind.F: "#9fc3e7", OpKind.B: "#f4a6a7", OpKind.I: "#f9c48d", OpKind.W: "#a6d49a"}
NAMES = {OpKind.F: "forward", OpKind.B: "backward (full)", OpKind.I: "input-grad backward",
         OpKind.W: "weight-grad backward"}
ROW, LABEL, PAD, CHAR = 26, 64, 12, 6.2  # row height, rank label width, padding, px per char


@dataclass(frozen=True)
class Panel:
    """One timeline to draw: its spec (for labels and the caption) and its simulation."""

    spec: PipelineSpec
    timeline: Timeline


def _scale(makespan: float, width: int | None) -> float:
    """Pixels per time unit: wide enough to read 8 x 20, at most ~3600 px for large pipelines."""
    if width:
        return max(0.5, (width - LABEL - 2 * PAD) / max(makespan, 1e-9))
    return max(2.0, min(24.0, 3600 / max(makespan, 1e-9)))


def _label(spec: PipelineSpec, op: Instr) -> str:
    """The microbatch; `r` marks direction 1 (whose stage on a rank is then implied); where a
    rank holds several stages of one direction (interleaved, V), `stage.microbatch`."""
    if spec.chunks == 1:
        return f"{op.microbatch}{'r' if op.direction else ''}"
    return f"{op.stage}.{op.microbatch}"


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
        fill = (REVERSE_COLORS if op.direction else COLORS)[op.kind]
        out.append(f'<rect x="{hx:.2f}" y="{y + 2:.2f}" width="{hw:.2f}" height="{ROW - 4}" fill="{fill}"/>')
        text = _label(spec, op)
        if hw >= len(text) * CHAR + 2:
            css = "lbl dark" if op.direction else "lbl"
            out.append(f'<text x="{hx + hw / 2:.2f}" y="{y + ROW / 2 + 4:.2f}" class="{css}">{escape(text)}</text>')
    border = "pair" if slot.instr.kind is OpKind.OVERLAP else "op"
    out.append(f'<rect class="{border}" x="{x:.2f}" y="{y + 2:.2f}" width="{w:.2f}" height="{ROW - 4}"/>')
    out.append("</g>")
    return "".join(out)


def _caption(panel: Panel) -> str:
    spec, t = panel.spec, panel.timeline
    peak = max(r.peak_activations for r in t.ranks)
    return (f"{spec.name}: {spec.schedule}, {spec.placement}, {spec.ranks} ranks x "
            f"{spec.microbatches} microbatches | makespan {t.makespan:g} | bubble {t.bubble:g} "
            f"(ratio {t.bubble_ratio:.1%}) | peak activations {peak:g}")


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


def _legend(x: float, y: float, kinds: list[OpKind], has_overlap: bool, has_reverse: bool) -> list[str]:
    out = []
    for kind in kinds:
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS[kind]}"/>'
                   f'<text x="{x + 16}" y="{y + 10}" class="leg">{kind.value} {NAMES[kind]}</text>')
        x += 16 + len(f"{kind.value} {NAMES[kind]}") * CHAR + 14
    if has_overlap:
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="#ffffff" class="pair"/>'
                   f'<text x="{x + 16}" y="{y + 10}" class="leg">overlapped F&amp;B pair</text>')
        x += 16 + 22 * CHAR + 14
    if has_reverse:
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{REVERSE_COLORS[OpKind.F]}"/>'
                   f'<text x="{x + 16}" y="{y + 10}" class="leg">light: direction 1</text>')
    return out


_STYLE = ("<style>text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;fill:#222}"
          ".lbl{font-size:10px;text-anchor:middle;fill:#fff}.dark{fill:#222}.tick{font-size:10px;text-anchor:middle}"
          ".leg{font-size:11px}.cap{font-size:13px;font-weight:bold}.rank{font-size:11px}"
          ".op{fill:none;stroke:#ffffff;stroke-width:0.6}.pair{fill:none;stroke:#222;stroke-width:1.6}"
          ".axis{stroke:#555;stroke-width:1}.row{fill:#f4f4f4}</style>")


def render_timeline_svg(panels: list[Panel], width: int | None = None) -> str:
    """The SVG of one or more timelines on one time axis (the longest sets the scale)."""
    makespan = max(p.timeline.makespan for p in panels)
    scale = _scale(makespan, width)
    x0 = LABEL + PAD
    total_w = x0 + makespan * scale + PAD
    body, y = [], PAD
    kinds = sorted({op.kind for p in panels for s in p.timeline.slots
                    for op in (s.instr.parts or (s.instr,))}, key=lambda k: "FBIW".index(k.value))
    has_overlap = any(s.instr.kind is OpKind.OVERLAP for p in panels for s in p.timeline.slots)
    has_reverse = any(p.spec.directions == 2 for p in panels)
    body += _legend(x0, y, kinds, has_overlap, has_reverse)
    y += 26
    for panel in panels:
        body.append(f'<text x="{PAD}" y="{y + 12}" class="cap">{escape(_caption(panel))}</text>')
        y += 20
        for rank in range(panel.spec.ranks):
            body.append(f'<rect x="{x0}" y="{y + ROW * rank + 1}" width="{makespan * scale:.2f}" '
                        f'height="{ROW - 2}" class="row"/>'
                        f'<text x="{PAD}" y="{y + ROW * rank + ROW / 2 + 4}" class="rank">rank {rank}</text>')
        body += [_cell(panel.spec, s, x0, y + ROW * s.rank, scale) for s in panel.timeline.slots]
        y += ROW * panel.spec.ranks + 6
    body += _axis(x0, y, makespan, scale)
    total_h = y + 24
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
            f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" data-scale="{scale:g}" data-x0="{x0}">')
    return "".join([head, _STYLE, '<rect width="100%" height="100%" fill="#ffffff"/>', *body, "</svg>\n"])
