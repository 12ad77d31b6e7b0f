"""Per-GPU expert loads as SVG: bars per GPU for a few layers, heat maps for many.

Each series (e.g. "no redundancy", "eplb", "best") is a `[layers, gpus]` array of tokens per GPU
(time per GPU with speeds: load / speed). With at most `PANEL_LAYERS` layers, one panel per layer
holds a group of bars per GPU, one bar per series, and a dashed line at the ideal (all tokens over
all GPUs), every panel on one scale (ticks at its top and half); with more, one heat map per series, layers as rows and GPUs as columns, coloured by
load / ideal. PNG comes from this SVG through cairosvg (viz/png.py).
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

COLORS = ("#bab0ac", "#f28e2b", "#4e79a7", "#59a14f")
PANEL_LAYERS = 8
PAD, LABEL, PANEL_H = 12, 56, 150
_STYLE = ("<style>text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;fill:#222}"
          ".cap{font-size:13px;font-weight:bold}.tick{font-size:10px}.leg{font-size:11px}"
          ".ideal{stroke:#222;stroke-dasharray:4 3;stroke-width:1}.axis{stroke:#555}</style>")


def _legend(names: list[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS[i % len(COLORS)]}"/>'
                   f'<text x="{x + 16}" y="{y + 10}" class="leg">{escape(name)}</text>')
        x += 16 + 6.5 * len(name) + 18
    return out


def _bars(series: dict, layer: int, x0: float, y0: float, width: float, top: float) -> list[str]:
    names = list(series)
    gpus = len(next(iter(series.values()))[layer])
    group = width / gpus
    bar = max(group * 0.8 / len(names), 0.5)
    out = [f'<line x1="{x0}" y1="{y0 + PANEL_H}" x2="{x0 + width:.1f}" y2="{y0 + PANEL_H}" class="axis"/>']
    for gpu in range(gpus):
        if gpus <= 32:
            out.append(f'<text x="{x0 + (gpu + 0.5) * group:.2f}" y="{y0 + PANEL_H + 11}" class="tick" '
                       f'text-anchor="middle">{gpu}</text>')
        for i, name in enumerate(names):
            value = float(series[name][layer][gpu])
            h = PANEL_H * value / top if top > 0 else 0
            x = x0 + gpu * group + group * 0.1 + i * bar
            out.append(f'<rect x="{x:.2f}" y="{y0 + PANEL_H - h:.2f}" width="{bar:.2f}" height="{h:.2f}" '
                       f'fill="{COLORS[i % len(COLORS)]}"><title>layer {layer}, GPU {gpu}, {escape(name)}: '
                       f'{value:g}</title></rect>')
    ideal = float(sum(series[names[0]][layer])) / gpus
    y = y0 + PANEL_H - PANEL_H * ideal / top if top > 0 else y0 + PANEL_H
    out.append(f'<line x1="{x0}" y1="{y:.2f}" x2="{x0 + width:.1f}" y2="{y:.2f}" class="ideal"/>')
    for fraction in (1.0, 0.5):  # the shared scale's ticks, the same on every layer's panel
        y = y0 + PANEL_H * (1 - fraction)
        out.append(f'<line x1="{x0 - 4}" y1="{y:.2f}" x2="{x0}" y2="{y:.2f}" class="axis"/>'
                   f'<text x="{PAD}" y="{y + 4:.2f}" class="tick">{top * fraction:.4g}</text>')
    out.append(f'<text x="{PAD}" y="{y0 + PANEL_H}" class="tick">0</text>')
    return out


def _round_up(value: float) -> float:
    """The scale's top: the smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value * (1 - 1e-12))


def _heat_color(ratio: float) -> str:
    """White at the ideal, red above it (1.5 x ideal and more: full), blue below."""
    t = max(-1.0, min(1.0, (ratio - 1) * 2))
    if t >= 0:
        return f"rgb(255,{int(255 * (1 - t))},{int(255 * (1 - t))})"
    return f"rgb({int(255 * (1 + t))},{int(255 * (1 + t))},255)"


def _heat_row(layers: int) -> int:
    """Pixels per layer in a heat map: 14 for a few layers, down to 3 for hundreds."""
    return max(3, min(14, 360 // layers))


def _heat(values, x0: float, y0: float, width: float) -> list[str]:
    layers, gpus = len(values), len(values[0])
    row_h = _heat_row(layers)
    cell = width / gpus
    out = []
    for layer in range(layers):
        ideal = sum(values[layer]) / gpus or 1.0
        for gpu in range(gpus):
            ratio = float(values[layer][gpu]) / ideal
            out.append(f'<rect x="{x0 + gpu * cell:.2f}" y="{y0 + layer * row_h}" width="{cell + 0.05:.2f}" '
                       f'height="{row_h}" fill="{_heat_color(ratio)}"><title>layer {layer}, GPU {gpu}: '
                       f'{ratio:.3f} x ideal</title></rect>')
    return out


def render_expert_loads_svg(series: dict, title: str, width: int = 900) -> str:
    """The SVG for `series`: name -> `[layers, gpus]` loads (same shape for every series)."""
    names = list(series)
    layers = len(series[names[0]])
    x0, plot_w = LABEL + PAD, width - LABEL - 2 * PAD
    body = [f'<text x="{PAD}" y="{PAD + 12}" class="cap">{escape(title)}</text>']
    y = PAD + 22
    if layers <= PANEL_LAYERS:
        body += _legend(names, x0, y)
        y += 22
        top = _round_up(max(float(max(series[n][layer])) for n in names for layer in range(layers)))
        for layer in range(layers):  # one scale for every layer, so their bars compare
            body.append(f'<text x="{x0}" y="{y + 10}" class="tick">layer {layer}: tokens per GPU '
                        '(GPUs numbered below; dashed: ideal; one scale for every layer)</text>')
            body += _bars(series, layer, x0, y + 14, plot_w, top)
            y += PANEL_H + 40
    else:
        for name in names:
            body.append(f'<text x="{x0}" y="{y + 10}" class="tick">{escape(name)}: layers (rows) x GPUs '
                        '(columns), load / ideal (white 1.0, red above, blue below)</text>')
            body += _heat(series[name], x0, y + 14, plot_w)
            y += layers * _heat_row(layers) + 34
    height = y + PAD
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}">')
    return "".join([head, _STYLE, '<rect width="100%" height="100%" fill="#ffffff"/>', *body, "</svg>\n"])
