"""An overlapped forward-backward pair as SVG, drawn as in DeepSeek-V3's Figure 4: two lanes as
rows (compute, communication), time left to right to scale, one labelled box per part (forward
parts, B parts and W parts in different colours), the best order first and DeepSeek's order
below it when that differs.

`format_pair_svg` takes the `Derived` value of `schedc.overlap.derive_costs`; this module does not
import schedc.overlap (viz/ stays below it in the layout), it reads the value's fields: F, B, FB,
proven, lower_bound, best and deepseek (each with makespan, hidden_comm, compute, comm and slices
of (label, lane, start, end)). PNG comes from the SVG through viz/png.py.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from .timeline import CAP_LINE, CHAR, LEG_ROW, MIN_WIDTH, PAD, ROW, wrap_caption

# forward, input-grad (B) and weight-grad (W) parts: the colours of F, I and W in timeline.py
KIND_COLORS = {"F": "#4e79a7", "B": "#f28e2b", "W": "#59a14f"}
KIND_NAMES = {"F": "forward part", "B": "input-grad (B) part", "W": "weight-grad (W) part"}
DARK_TEXT = {"B"}  # light fills: dark label text
LANES = (("compute", "compute"), ("comm", "communication"))
MAX_WIDTH = 6000  # px: the time axis never grows past this to fit the labels
LANE_LABEL = 96  # px for the lane names


STYLE = ("<style>text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;fill:#222}"
         ".lbl{font-size:10px;text-anchor:middle;fill:#fff}.dark{fill:#222}.tick{font-size:10px;text-anchor:middle}"
         ".leg{font-size:11px}.note{font-size:11px;fill:#8a4b00}.cap{font-size:13px;font-weight:bold}"
         ".lane{font-size:11px}.op{fill:none;stroke:#ffffff;stroke-width:0.6}"
         ".axis{stroke:#555;stroke-width:1}.row{fill:#f4f4f4}</style>")  # timeline.py's look


def _legend(kinds: list[str]) -> str:
    """One row of swatches: the part kinds drawn."""
    out, x = [], PAD
    for kind in kinds:
        text = f"{kind}: {KIND_NAMES[kind]}"
        out.append(f'<rect x="{x}" y="{PAD}" width="12" height="12" fill="{KIND_COLORS[kind]}"/>'
                   f'<text x="{x + 16}" y="{PAD + 10}" class="leg">{escape(text)}</text>')
        x += 16 + len(text) * CHAR + 14
    return "".join(out)


def _text_lines(x: float, y: float, lines: list[str], css: str, step: float) -> str:
    spans = "".join(f'<tspan x="{x}" dy="{0 if i == 0 else step}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text x="{x}" y="{y}" class="{css}">{spans}</text>'


def _axis(x0: float, y: float, makespan: float, scale: float) -> str:
    """The time axis with a tick every 1, 2, 5, 10, ... units, at least 40 px apart."""
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10 ** 9) if s * scale >= 40)
    out = [f'<line x1="{x0}" y1="{y}" x2="{x0 + makespan * scale:.2f}" y2="{y}" class="axis"/>']
    for k in range(int(makespan / step + 1e-9) + 1):
        x = x0 + k * step * scale
        out.append(f'<line x1="{x:.2f}" y1="{y}" x2="{x:.2f}" y2="{y + 4}" class="axis"/>'
                   f'<text x="{x:.2f}" y="{y + 15}" class="tick">{k * step:g}</text>')
    return "".join(out)


def _scale(makespan: float, shortest: float, width: int | None) -> float:
    """Pixels per time unit: `width` when given; else wide enough that the shortest part shows
    its short label (about 3 characters), between ~900 and MAX_WIDTH px."""
    if width:
        return max(0.5, (width - LANE_LABEL - 2 * PAD) / max(makespan, 1e-9))
    wanted = (3 * CHAR + 6) / max(shortest, 1e-9)
    return max(900 / max(makespan, 1e-9), min(wanted, MAX_WIDTH / max(makespan, 1e-9)))


def _box(piece, x0: float, y: float, scale: float) -> str:
    """One part: its box at its start and end, a tooltip, the longest label that fits."""
    label, lane, start, end = piece
    kind = label[0]
    x, w = x0 + start * scale, max((end - start) * scale, 0.5)
    layer, name = label[1:].split(".", 1)
    title = f"{label}: {KIND_NAMES.get(kind, kind)}, layer {layer}, {lane}; start {start:g}, end {end:g}"
    out = [f'<g class="cell" data-part="{escape(label)}" data-lane="{lane}" data-start="{start:g}" '
           f'data-end="{end:g}"><title>{escape(title)}</title>',
           f'<rect x="{x:.2f}" y="{y + 2:.2f}" width="{w:.2f}" height="{ROW - 4}" '
           f'fill="{KIND_COLORS.get(kind, "#999999")}"/>']
    for text in (label, f"{kind}{layer}.{name[:1]}", f"{kind}{layer}"):
        if w >= len(text) * CHAR + 2:
            css = "lbl dark" if kind in DARK_TEXT else "lbl"
            out.append(f'<text x="{x + w / 2:.2f}" y="{y + ROW / 2 + 4:.2f}" class="{css}">{escape(text)}</text>')
            break
    out.append(f'<rect class="op" x="{x:.2f}" y="{y + 2:.2f}" width="{w:.2f}" height="{ROW - 4}"/></g>')
    return "".join(out)


def _panels(derived) -> list[tuple[str, object]]:
    """(caption, schedule) of each pair drawn: the best; DeepSeek's when its orders differ."""
    best, deepseek = derived.best, derived.deepseek
    proof = "proven optimal" if derived.proven else f"best found; lower bound {derived.lower_bound:.4g}"
    panels = [(f"best order | F&B {best.makespan:.4g} ({proof}) | communication hidden "
               f"{best.hidden_comm:.1%}", best)]
    if (deepseek.compute, deepseek.comm) != (best.compute, best.comm):
        panels.append((f"DeepSeek's order (Figure 4) | {deepseek.makespan:.4g} | communication hidden "
                       f"{deepseek.hidden_comm:.1%}", deepseek))
    else:
        panels[0] = (panels[0][0] + " | DeepSeek's order (Figure 4)", best)
    return panels


def format_pair_svg(derived, title: str, width: int | None = None) -> str:
    """The SVG of `derived`'s pair schedules (module docstring) under `title`, which the caption
    follows with F, B, F&B and sequential F + B. At least MIN_WIDTH wide."""
    panels = _panels(derived)
    makespan = max(s.makespan for _, s in panels)
    durations = [p.end - p.start for _, s in panels for p in s.slices if p.end > p.start]
    scale = _scale(makespan, min(durations, default=1.0), width)
    x0 = LANE_LABEL + PAD
    total_w = max(x0 + makespan * scale + PAD, MIN_WIDTH)
    kinds = sorted({p.label[0] for _, s in panels for p in s.slices}, key="FBW".index)
    body = [_legend(kinds)]
    y = PAD + LEG_ROW + 8
    head = (f"{title} | F {derived.F:.4g}, B {derived.B:.4g} (B and W parts), F&B {derived.FB:.4g}, "
            f"sequential F + B {derived.F + derived.B:.4g}")
    lines = wrap_caption(head, total_w - 2 * PAD)
    body.append(_text_lines(PAD, y + 12, lines, "cap", CAP_LINE))
    y += 20 + CAP_LINE * (len(lines) - 1)
    for caption, schedule in panels:
        lines = wrap_caption(caption, total_w - 2 * PAD, CHAR * 1.1)
        body.append(_text_lines(PAD, y + 10, lines, "note", 14))
        y += 14 * len(lines) + 4
        for row, (lane, name) in enumerate(LANES):
            ry = y + ROW * row
            body.append(f'<rect x="{x0}" y="{ry + 1}" width="{makespan * scale:.2f}" height="{ROW - 2}" '
                        f'class="row"/><text x="{PAD}" y="{ry + ROW / 2 + 4}" class="lane">{name}</text>')
            body += [_box(p, x0, ry, scale) for p in schedule.slices if p.lane == lane]
        y += ROW * len(LANES) + LEG_ROW // 2
    body.append(_axis(x0, y, makespan, scale))
    total_h = y + 24
    svg_head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
                f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" data-scale="{scale:g}" data-x0="{x0}">')
    return "".join([svg_head, STYLE, '<rect width="100%" height="100%" fill="#ffffff"/>', *body, "</svg>\n"])
