"""A small hand-written SVG vocabulary for the report's charts: escaping, linear scales, tick values,
axes and the chart frame with its ``<title>`` and ``<desc>`` (the text a screen reader or a text-only
reader gets). Inline SVG inside HTML: no ``xmlns``, no scripts, no external reference.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

FONT = "font-family:system-ui,sans-serif"
CHAR_W = 6.3
"""About how wide a character of the 11 px labels is, for laying out label columns."""

PALETTE = {
    "base": "#6b7280", "better": "#15803d", "worse": "#b91c1c", "same": "#6b7280", "feasible": "#1d4ed8",
    "infeasible": "#b91c1c", "axis": "#374151", "grid": "#e5e7eb", "triage": "#7c3aed", "optimize": "#1d4ed8",
    "gate": "#0f766e", "other": "#6b7280", "passed": "#15803d", "refused": "#b91c1c", "ancestor": "#9ca3af",
}


def esc(value: object) -> str:
    """Text for an SVG (or HTML) attribute or element: ``& < > " '`` escaped."""
    return html.escape(str(value), quote=True)


def num(value: float) -> str:
    """A coordinate: at most one decimal, no trailing ``.0``."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(1, chars - 1)] + "…"


def text_width(text: str) -> float:
    return len(text) * CHAR_W


class Linear:
    """Maps a data interval onto a pixel interval."""

    def __init__(self, domain: tuple[float, float], pixels: tuple[float, float]):
        self.d0, self.d1 = domain
        self.p0, self.p1 = pixels

    def __call__(self, value: float) -> float:
        if self.d1 == self.d0:
            return (self.p0 + self.p1) / 2
        return self.p0 + (value - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)


def nice_step(span: float, count: int) -> float:
    raw = span / max(1, count)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def domain(values: Iterable[float], *, floor: tuple[float, float] | None = None, count: int = 5) -> tuple[float, float]:
    """A padded, rounded interval holding `values` (and `floor`, e.g. (0, 1) for scores)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if floor is not None:
        vals += list(floor)
    if not vals:
        return (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
        if min(vals) >= 0 > lo:
            lo = 0.0
    step = nice_step(hi - lo, count)
    return (math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step)


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + step * 1e-6:
        out.append(round(v, 10))
        v += step
    return out


def tick_label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0")


def text(x: float, y: float, content: str, *, size: int = 11, anchor: str = "start", weight: str | None = None,
         fill: str = "#111827", extra: str = "") -> str:
    style = f' font-weight="{weight}"' if weight else ""
    return (f'<text x="{num(x)}" y="{num(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{style}'
            f'{(" " + extra) if extra else ""}>{esc(content)}</text>')


def line(x1: float, y1: float, x2: float, y2: float, *, stroke: str = PALETTE["axis"], width: float = 1,
         dash: str | None = None) -> str:
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" stroke="{stroke}" '
            f'stroke-width="{num(width)}"{d}/>')


def x_axis(scale: Linear, y: float, label: str, *, count: int = 5, grid_to: float | None = None,
           start: float | None = None) -> list[str]:
    """A horizontal axis at `y` (its line from `start`, else the scale's first pixel) with ticks, tick labels,
    optional vertical grid lines up to `grid_to`, and its label."""
    out = [line(scale.p0 if start is None else start, y, scale.p1, y)]
    for t in ticks(scale.d0, scale.d1, count):
        x = scale(t)
        if grid_to is not None:
            out.append(line(x, grid_to, x, y, stroke=PALETTE["grid"]))
        out.append(line(x, y, x, y + 4))
        out.append(text(x, y + 15, tick_label(t), size=10, anchor="middle"))
    out.append(text((scale.p0 + scale.p1) / 2, y + 32, label, anchor="middle", extra='class="axis-label"'))
    return out


def y_axis(scale: Linear, x: float, label: str, *, count: int = 5, grid_to: float | None = None,
           start: float | None = None) -> list[str]:
    """A vertical axis at `x` (scale pixels run downwards; its line from `start`, else the scale's first pixel)
    with ticks, labels, optional grid and its rotated label."""
    out = [line(x, scale.p0 if start is None else start, x, scale.p1)]
    for t in ticks(scale.d0, scale.d1, count):
        y = scale(t)
        if grid_to is not None:
            out.append(line(x, y, grid_to, y, stroke=PALETTE["grid"]))
        out.append(line(x - 4, y, x, y))
        out.append(text(x - 7, y + 3.5, tick_label(t), size=10, anchor="end"))
    mid = (scale.p0 + scale.p1) / 2
    out.append(f'<text x="0" y="0" font-size="11" text-anchor="middle" fill="#111827" class="axis-label" '
               f'transform="translate({num(x - 40)},{num(mid)}) rotate(-90)">{esc(label)}</text>')
    return out


def legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> list[str]:
    """Entries of (marker SVG drawn around (0, 0), label), laid out left to right from (x, y)."""
    out = []
    for marker, label in entries:
        out.append(f'<g transform="translate({num(x)},{num(y)})">{marker}</g>')
        out.append(text(x + 9, y + 4, label, size=10))
        x += 34 + text_width(label)
    return out


def chart(width: float, height: float, title: str, desc: str, body: Iterable[str], *, css_class: str) -> str:
    """The frame: a titled, described ``<svg role="img">`` whose text alternative is its `desc`."""
    return (f'<svg class="plot {esc(css_class)}" role="img" width="{num(width)}" height="{num(height)}" '
            f'viewBox="0 0 {num(width)} {num(height)}" style="{FONT}">'
            f'<title>{esc(title)}</title><desc>{esc(desc)}</desc>'
            + text(width / 2, 18, title, size=13, anchor="middle", weight="bold")
            + "".join(body) + "</svg>")
