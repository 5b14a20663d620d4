"""Trend charts as inline SVG, drawn on the server: no script, no image file, text that
screen readers and the page's language switch reach (every word comes from the caller).

`line_chart` draws rates (0-100 %) per period, a gap where a period has nothing to
measure; `bar_chart` draws counts per period side by side. Each series has its own colour
and its own marker shape / fill pattern, so the chart reads in grey too. The chart names
itself (`<title>`, `<desc>`, `role="img"`); the page puts the same figures in a table
beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["FONT", "ChartText", "Series", "bar_chart", "line_chart"]

FONT = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'Microsoft YaHei', 'PingFang SC', sans-serif"
COLOURS = ("#9f1d1d", "#1d4ed8", "#047857", "#7c3aed", "#b45309", "#374151")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "4 4", "1 2")
WIDTH, HEIGHT = 760, 350
LEGEND_ROW = 18
# The plot starts below two legend rows.
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 20 + 2 * LEGEND_ROW, 78


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # a rate as a fraction (line) or a count (bar)


@dataclass(frozen=True)
class ChartText:
    """Every word of a chart, in the page's language."""

    element_id: str
    title: str
    desc: str
    x_axis: str  # e.g. 统计周期（月）
    y_axis: str  # e.g. 比率（%）/ 件数（件）
    no_data: str  # shown where a period has nothing to measure (line chart)


def _open(text: ChartText) -> list[str]:
    t, d = f"{text.element_id}-title", f"{text.element_id}-desc"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(text.element_id)}" '
        f'class="chart" role="img" aria-labelledby="{t} {d}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" style="max-width:{WIDTH}px" font-family="{escape(FONT)}" '
        'font-size="13">',
        f'<title id="{t}">{escape(text.title)}</title>',
        f'<desc id="{d}">{escape(text.desc)}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]


def _axes(text: ChartText, labels: Sequence[str], top: float, ticks: Sequence[float],
          tick_text: Sequence[str]) -> list[str]:
    """Grid, y ticks, x labels (turned so that Chinese month names fit) and axis titles."""
    plot_h = HEIGHT - TOP - BOTTOM
    out = []
    for value, shown in zip(ticks, tick_text, strict=True):
        y = TOP + plot_h * (1 - value / top) if top else TOP + plot_h
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#d1d5db" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" '
                   f'fill="#374151">{escape(shown)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#4b5563"/>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" '
               f'y2="{TOP + plot_h}" stroke="#4b5563"/>')
    for i, label in enumerate(labels):
        x = _x(i, len(labels))
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="end" '
                   f'transform="rotate(-35 {x:.1f} {TOP + plot_h + 16})" '
                   f'fill="#374151" font-size="12">{escape(label)}</text>')
    out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 6}" '
               f'text-anchor="middle" fill="#1f2937">{escape(text.x_axis)}</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" fill="#1f2937" '
               f'transform="rotate(-90 16 {TOP + plot_h / 2:.0f})">{escape(text.y_axis)}</text>')
    return out


def _x(i: int, n: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + span * (i + 0.5) / n


def _legend(series: Sequence[Series], marker: str) -> list[str]:
    """Above the plot, wrapped onto as many rows as it needs (LEGEND_ROWS at most)."""
    out, x, y = [], LEFT + 4.0, 10.0
    for k, s in enumerate(series):
        width = 44 + 13.5 * _width(s.name)
        if x + width > WIDTH - RIGHT and x > LEFT + 4:
            x, y = LEFT + 4.0, y + LEGEND_ROW
        colour = COLOURS[k % len(COLOURS)]
        if marker == "line":
            out.append(f'<line x1="{x:.0f}" x2="{x + 22:.0f}" y1="{y:.0f}" y2="{y:.0f}" '
                       f'stroke="{colour}" stroke-width="2.5" '
                       f'stroke-dasharray="{DASHES[k % len(DASHES)]}"/>')
            out.append(_marker(k, x + 11, y, colour))
        else:
            out.append(f'<rect x="{x:.0f}" y="{y - 7:.0f}" width="22" height="13" fill="{colour}" '
                       f'fill-opacity="{_opacity(k)}" stroke="{colour}"/>')
        out.append(f'<text x="{x + 28:.0f}" y="{y + 5:.0f}" fill="#1f2937">{escape(s.name)}</text>')
        x += width
    return out


def _width(text: str) -> float:
    """Roughly how many 13 px em a label takes (CJK full width, the rest half)."""
    return sum(1.0 if ord(ch) > 0x2E80 else 0.55 for ch in text)


def _opacity(k: int) -> str:
    return ("1", "0.45", "0.75", "0.25")[k % 4]


def _marker(k: int, x: float, y: float, colour: str) -> str:
    shape = k % 4
    if shape == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
    if shape == 1:
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == 2:
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} '
                f'{x - 5:.1f},{y + 4:.1f}" fill="{colour}"/>')
    return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} '
            f'{x - 5:.1f},{y:.1f}" fill="#fff" stroke="{colour}" stroke-width="2"/>')


def line_chart(text: ChartText, labels: Sequence[str], series: Sequence[Series]) -> str:
    """Rates per period, 0-100 %: one line per series, broken where a value is None."""
    plot_h = HEIGHT - TOP - BOTTOM
    ticks = [0, 20, 40, 60, 80, 100]
    out = _open(text) + _axes(text, labels, 100, ticks, [f"{t}%" for t in ticks])
    out += _legend(series, "line")
    n = len(labels)
    for k, s in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        points = [(_x(i, n), TOP + plot_h * (1 - v)) if v is not None else None
                  for i, v in enumerate(s.values)]
        segment: list[tuple[float, float]] = []
        for point in [*points, None]:
            if point is not None:
                segment.append(point)
                continue
            if len(segment) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                           f'stroke-width="2.5" stroke-dasharray="{DASHES[k % len(DASHES)]}"/>')
            segment = []
        for i, (point, value) in enumerate(zip(points, s.values, strict=True)):
            if point is not None and value is not None:
                out.append(f'<g>{_marker(k, *point, colour)}<title>{escape(labels[i])} '
                           f'{escape(s.name)} {100 * value:.1f}%</title></g>')
    if all(v is None for s in series for v in s.values):
        out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
                   f'text-anchor="middle" fill="#4b5563">{escape(text.no_data)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _nice_top(largest: float) -> tuple[float, list[float]]:
    """An axis top of 1, 2 or 5 times a power of ten, and five ticks up to it."""
    if largest <= 0:
        return 5.0, [0, 1, 2, 3, 4, 5]
    power = 10 ** math.floor(math.log10(largest))
    for step in (1, 2, 5, 10):
        top = step * power
        if top >= largest:
            break
    if top < 5:
        top = 5
    tick = top / 5
    return top, [tick * i for i in range(6)]


def bar_chart(text: ChartText, labels: Sequence[str], series: Sequence[Series]) -> str:
    """Counts per period, the series side by side."""
    plot_h = HEIGHT - TOP - BOTTOM
    largest = max((v or 0 for s in series for v in s.values), default=0)
    top, ticks = _nice_top(float(largest))
    out = _open(text) + _axes(text, labels, top, ticks, [f"{t:g}" for t in ticks])
    out += _legend(series, "bar")
    n, m = len(labels), max(1, len(series))
    slot = (WIDTH - LEFT - RIGHT) / max(1, n)
    bar = min(26.0, slot * 0.8 / m)
    for k, s in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        for i, value in enumerate(s.values):
            height = plot_h * (value or 0) / top
            x = _x(i, n) - bar * m / 2 + bar * k
            out.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{bar - 2:.1f}" '
                       f'height="{height:.1f}" fill="{colour}" fill-opacity="{_opacity(k)}" '
                       f'stroke="{colour}"><title>{escape(labels[i])} {escape(s.name)} '
                       f'{value or 0:g}</title></rect>')
    out.append("</svg>")
    return "\n".join(out)
