"""PNG through cairosvg: the same picture as the SVG, rasterized by a well-kept library."""

from __future__ import annotations

from ..errors import Diagnostic, SchedError


def svg_to_png(svg: str, scale: float = 1.0) -> bytes:
    """Rasterize an SVG document; raises `SchedError` saying what to install when cairosvg (or
    the cairo library under it) is missing."""
    try:
        import cairosvg
    except (ImportError, OSError) as exc:
        raise SchedError([Diagnostic(
            "PNG output needs cairosvg and the cairo library: `pip install cairosvg` (or "
            "`pip install 'schedc[viz]'`) and, on Debian/Ubuntu, `apt-get install libcairo2`; "
            f"or write .svg instead ({exc.__class__.__name__}: {exc})")]) from None
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
