"""Inline SVG charts for the HTML reports: a stacked memory bar against a limit, and a line chart.

Plain strings, no plotting library and nothing fetched: the page must open offline and in a test.
Each memory component has one fixed colour (``COLORS``) so a reader, and the rendering test, can find it.
"""

from __future__ import annotations

from html import escape

COLORS = {
    "weights": "#1f77b4",
    "gradients": "#ff7f0e",
    "optimizer": "#d62728",
    "activations": "#2ca02c",
    "kv_cache": "#9467bd",
    "cuda_context": "#8c8c8c",
    "allocator": "#c7c7c7",
}
"""Memory component (the estimator's breakdown keys) -> its colour in every chart."""

LIMIT_COLOR = "#000000"
LINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def _color(name: str, index: int) -> str:
    return COLORS.get(name, LINE_COLORS[index % len(LINE_COLORS)])


def stacked_bar(segments: dict[str, float], *, limit: float | None = None, scale_max: float | None = None,
                width: int = 640, height: int = 34, unit: str = "GB", label: str = "") -> str:
    """One horizontal bar of ``segments`` (drawn in order), a vertical line at ``limit`` (e.g. the VRAM).

    ``scale_max`` fixes the axis so that several bars (ranked candidates) share one scale.
    """
    total = sum(v for v in segments.values() if v > 0)
    top = max(scale_max or 0.0, total, limit or 0.0) * 1.05 or 1.0
    x, parts = 0.0, []
    for i, (name, value) in enumerate(segments.items()):
        if value <= 0:
            continue
        w = value / top * width
        parts.append(f'<rect x="{x:.1f}" y="4" width="{w:.1f}" height="{height - 8}" fill="{_color(name, i)}">'
                     f"<title>{escape(name)}: {value:.2f} {unit}</title></rect>")
        x += w
    if limit is not None:
        lx = limit / top * width
        parts.append(f'<line x1="{lx:.1f}" y1="0" x2="{lx:.1f}" y2="{height}" stroke="{LIMIT_COLOR}" '
                     f'stroke-width="3" stroke-dasharray="5,3"><title>limit {limit:.2f} {unit}</title></line>')
    title = escape(label or f"{total:.2f} {unit}")
    return (f'<svg class="bar" role="img" aria-label="{title}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')


def legend(names: list[str]) -> str:
    items = "".join(f'<span class="key"><span class="swatch" style="background:{_color(n, i)}"></span>'
                    f"{escape(n.replace('_', ' '))}</span>" for i, n in enumerate(names))
    return f'<div class="legend">{items}</div>'


def line_chart(series: dict[str, list[tuple[float, float]]], *, width: int = 640, height: int = 240,
               x_label: str = "step", y_label: str = "loss") -> str:
    """Polylines of (x, y) points on shared axes, with the min and max of each axis written at its ends."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return ""
    pad = 40
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>',
             f'<text x="{pad}" y="{height - pad + 16}" font-size="11">{x0:g}</text>',
             f'<text x="{width - pad}" y="{height - pad + 16}" font-size="11" text-anchor="end">{x1:g}</text>',
             f'<text x="{pad - 4}" y="{height - pad}" font-size="11" text-anchor="end">{y0:.3g}</text>',
             f'<text x="{pad - 4}" y="{pad + 4}" font-size="11" text-anchor="end">{y1:.3g}</text>',
             f'<text x="{width / 2}" y="{height - 6}" font-size="12" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="12" y="{height / 2}" font-size="12" transform="rotate(-90 12 {height / 2})" '
             f'text-anchor="middle">{escape(y_label)}</text>']
    for i, (name, pts) in enumerate(series.items()):
        color = LINE_COLORS[i % len(LINE_COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="3" points="{coords}">'
                     f"<title>{escape(name)}</title></polyline>")
    return (f'<svg class="chart" role="img" aria-label="{escape(y_label)} by {escape(x_label)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'{"".join(parts)}</svg>')
