"""PNG through cairosvg: the same picture as the SVG, rasterized by a well-kept library; and the
size limit every picture keeps (`MAX_SIDE`)."""

from __future__ import annotations

import re

from ..errors import Diagnostic, SchedError

MAX_SIDE = 16_384  # pixels: the widest or tallest picture drawn (cairo itself stops at 32,767)


class PictureTooLarge(ValueError):
    """A picture that would be more than MAX_SIDE pixels a side; the message says how large it
    would be, the limit, and what to change."""


def svg_size(svg: str) -> tuple[float, float]:
    """The width and height (pixels) of an SVG document written by schedc.viz."""
    head = svg[:svg.find(">")]
    sizes = [re.search(rf'\b{name}="([0-9.]+)"', head) for name in ("width", "height")]
    return tuple(float(m[1]) if m else 0.0 for m in sizes)


def svg_to_png(svg: str, scale: float = 1.0) -> bytes:
    """Rasterize an SVG document; raises `SchedError` saying what to install when cairosvg (or
    the cairo library under it) is missing, and `PictureTooLarge` over MAX_SIDE pixels a side."""
    width, height = svg_size(svg)
    if max(width, height) * scale > MAX_SIDE:
        raise PictureTooLarge(f"a {round(width * scale):,} x {round(height * scale):,} pixel PNG is "
                              f"over the limit of {MAX_SIDE:,} pixels a side")
    try:
        import cairosvg
    except (ImportError, OSError) as exc:
        raise SchedError([Diagnostic(
            "PNG output needs cairosvg and the cairo library: `pip install cairosvg` (or "
            "`pip install 'schedc[viz]'`) and, on Debian/Ubuntu, `apt-get install libcairo2`; "
            f"or write .svg instead ({exc.__class__.__name__}: {exc})")]) from None
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
