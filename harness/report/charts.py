"""Small inline-SVG charts for the run report, so that report.html needs nothing at view time.

A report is opened from a CI artefact, a laptop without network, or a file attached to an issue: it must carry
its pictures inside. Charting libraries either load JavaScript from a CDN or pull in a plotting stack far larger
than the few charts a run needs, so this module draws them itself: stacked bars per time bucket (sessions started
per pod, violations and disruptions), stacked areas (sessions live per pod) and lines (latency percentiles), all
with vertical event markers. Every mark has an SVG ``<title>``, which browsers show as a tooltip without any
script. Text is escaped; output is a plain ``<svg>`` element string for embedding in HTML (no XML namespace or
external reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "CHART_CSS",
    "PALETTE",
    "Line",
    "Marker",
    "color_for",
    "line_chart",
    "nice_ticks",
    "stacked_area",
    "stacked_bars",
]

# Tableau 10 (distinguishable; the order keeps neighbours apart), then ten darker or lighter companions
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f4e79",
    "#b85c00",
    "#2f6b2a",
    "#9e1b1e",
    "#3f8f8a",
    "#a88a00",
    "#6f4a68",
    "#d4607a",
    "#5e4432",
    "#6e6e6e",
)

_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 46, 40
_CHAR_W = 6.6  # average width of a 11px sans-serif character, for laying out legends


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` (an event), labelled ``label`` with ``title`` as its tooltip."""

    x: float
    label: str
    title: str = ""


@dataclass(frozen=True)
class Line:
    name: str
    points: Sequence[tuple[float, float]]
    color: str
    dashed: bool = False


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [low, high] with about ``count`` ticks."""
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError(f"ticks need a finite range, not [{low}, {high}]")
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw - 1e-12)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high - 1e-9:
        ticks.append(round(value, 10))
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


def _fmt_time(seconds: float) -> str:
    """A time for a tooltip: seconds, or minutes and seconds past two minutes."""
    if seconds < 120:
        return f"{seconds:g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes:.0f}m{rest:02.0f}s" if round(rest) else f"{minutes:.0f}m"


def _time_ticks(low: float, high: float) -> list[tuple[float, str]]:
    """Round ticks of a time axis in one unit (s, min or h) chosen by the span, with their labels."""
    span = high - low
    unit, suffix = (3600.0, "h") if span >= 4 * 3600 else (60.0, "m") if span >= 600 else (1.0, "s")
    ticks = nice_ticks(low / unit, high / unit, 8)
    return [(t * unit, f"{t:g}{suffix}") for t in ticks if low - 1e-9 <= t * unit <= high + 1e-9]


class _Frame:
    """Scales, axes, grid, markers and legend shared by the chart kinds."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_max: float,
        title: str,
        y_label: str,
        legend: Sequence[tuple[str, str]],
    ) -> None:
        self.width = width
        self.x0, self.x1 = x_range[0], max(x_range[1], x_range[0] + 1e-9)
        self.y_ticks = nice_ticks(0.0, y_max if y_max > 0 else 1.0)
        self.y1 = self.y_ticks[-1]
        self.legend_rows = self._layout_legend(legend)
        self.height = height + (18 * len(self.legend_rows) + 14 if self.legend_rows else 0)
        self.plot = (_LEFT, _TOP, width - _RIGHT, height - _BOTTOM)  # left, top, right, bottom in pixels
        self.title = title
        self.y_label = y_label
        self.back: list[str] = []  # title, grid, axes: under the data
        self.front: list[str] = []  # markers, legend: over it

    def _layout_legend(self, legend: Sequence[tuple[str, str]]) -> list[list[tuple[float, str, str]]]:
        rows: list[list[tuple[float, str, str]]] = []
        x = float(_LEFT)
        for name, color in legend:
            w = 18 + len(name) * _CHAR_W + 14
            if not rows or x + w > self.width - _RIGHT:
                rows.append([])
                x = float(_LEFT)
            rows[-1].append((x, name, color))
            x += w
        return rows

    def sx(self, x: float) -> float:
        left, _, right, _ = self.plot
        return left + (x - self.x0) / (self.x1 - self.x0) * (right - left)

    def sy(self, y: float) -> float:
        _, top, _, bottom = self.plot
        return bottom - y / self.y1 * (bottom - top)

    def axes(self) -> None:
        left, top, right, bottom = self.plot
        p = self.back
        p.append(f'<text x="{left}" y="16" class="ct">{escape(self.title)}</text>')
        for tick in self.y_ticks:
            y = self.sy(tick)
            p.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="cg"/>')
            p.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="cy">{_fmt(tick)}</text>')
        p.append(
            f'<text transform="translate(14,{(top + bottom) / 2:.0f}) rotate(-90)" class="cl">'
            f"{escape(self.y_label)}</text>"
        )
        for tick, label in _time_ticks(self.x0, self.x1):
            x = self.sx(tick)
            p.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" class="ca"/>')
            p.append(f'<text x="{x:.1f}" y="{bottom + 16}" class="cx">{label}</text>')
        p.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" class="ca"/>')
        p.append(f'<text x="{right}" y="{bottom + 32}" class="cu">time since the start</text>')

    def markers(self, markers: Sequence[Marker]) -> None:
        _, top, _, bottom = self.plot
        for i, m in enumerate(markers):
            if not self.x0 - 1e-9 <= m.x <= self.x1 + 1e-9:
                continue
            x = self.sx(m.x)
            tip = escape(m.title or m.label)
            y_text = top - 4 - (i % 2) * 12
            self.front.append(
                f'<g class="cm"><title>{tip}</title>'
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_text + 2}" y2="{bottom}"/>'
                f'<text x="{x + 3:.1f}" y="{y_text}">{escape(m.label)}</text></g>'
            )

    def legend(self) -> None:
        _, _, _, bottom = self.plot
        for r, row in enumerate(self.legend_rows):
            y = bottom + 52 + 18 * r
            for x, name, color in row:
                self.front.append(
                    f'<rect x="{x:.1f}" y="{y - 9}" width="12" height="12" fill="{color}"/>'
                    f'<text x="{x + 17:.1f}" y="{y + 1}" class="cg-l">{escape(name)}</text>'
                )

    def render(self, body: list[str]) -> str:
        return (
            f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}" role="img" aria-label="{escape(self.title)}">'
            + "".join(self.back)
            + "".join(body)
            + "".join(self.front)
            + "</svg>"
        )


def _empty(title: str, width: int, text: str) -> str:
    height = 64
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><text x="{_LEFT}" y="16" class="ct">{escape(title)}</text>'
        f'<text x="{width / 2:.0f}" y="44" class="ce">{escape(text)}</text></svg>'
    )


def _stacked_frame(
    starts: Sequence[float],
    bucket_s: float,
    y_max: float,
    layers: Mapping[str, Sequence[float]],
    colors: Mapping[str, str],
    title: str,
    y_label: str,
    width: int,
    height: int,
) -> _Frame:
    """The frame, axes drawn, of a chart of stacked layers over buckets."""
    frame = _Frame(
        width=width,
        height=height,
        x_range=(starts[0], starts[-1] + bucket_s),
        y_max=y_max,
        title=title,
        y_label=y_label,
        legend=[(name, colors[name]) for name in layers],
    )
    frame.axes()
    return frame


def stacked_bars(
    starts: Sequence[float],
    bucket_s: float,
    layers: Mapping[str, Sequence[float]],
    *,
    colors: Mapping[str, str],
    title: str,
    y_label: str,
    markers: Sequence[Marker] = (),
    unit: str = "",
    width: int = 960,
    height: int = 260,
    empty_text: str = "nothing recorded",
) -> str:
    """One stacked bar per bucket (``starts[i]`` to ``starts[i] + bucket_s``), a layer per key, in order."""
    totals = [sum(values[i] for values in layers.values()) for i in range(len(starts))]
    if not starts or not any(totals):
        return _empty(title, width, empty_text)
    frame = _stacked_frame(starts, bucket_s, max(totals), layers, colors, title, y_label, width, height)
    body: list[str] = []
    bar_w = max(frame.sx(bucket_s) - frame.sx(0.0) - 1.0, 0.6)
    for i, start in enumerate(starts):
        base = 0.0
        x = frame.sx(start) + 0.5
        for name, values in layers.items():
            value = values[i]
            if not value:
                continue
            y_top, y_bottom = frame.sy(base + value), frame.sy(base)
            tip = f"{name}: {_fmt(value)}{unit} from {_fmt_time(start)} to {_fmt_time(start + bucket_s)}"
            body.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" height="{y_bottom - y_top:.1f}" '
                f'fill="{colors[name]}"><title>{escape(tip)}</title></rect>'
            )
            base += value
    frame.markers(markers)
    frame.legend()
    return frame.render(body)


def stacked_area(
    starts: Sequence[float],
    bucket_s: float,
    layers: Mapping[str, Sequence[float]],
    *,
    colors: Mapping[str, str],
    title: str,
    y_label: str,
    markers: Sequence[Marker] = (),
    unit: str = "",
    width: int = 960,
    height: int = 260,
    empty_text: str = "nothing recorded",
) -> str:
    """Layers stacked as areas (a layer per key, in order from the bottom) through the middle of each bucket, for
    values that are means over a bucket; held flat to the first and last bucket's edges. An invisible column per
    bucket carries the tooltip: every non-zero layer's value in that bucket."""
    count = len(starts)
    totals = [sum(values[i] for values in layers.values()) for i in range(count)]
    if not starts or not any(totals):
        return _empty(title, width, empty_text)
    end = starts[-1] + bucket_s
    frame = _stacked_frame(starts, bucket_s, max(totals), layers, colors, title, y_label, width, height)
    xs = [starts[0], *(start + bucket_s / 2 for start in starts), end]
    body: list[str] = []
    base = [0.0] * count
    for name, values in layers.items():
        if not any(values[i] for i in range(count)):
            continue
        top = [base[i] + values[i] for i in range(count)]
        upper = [top[0], *top, top[-1]]
        lower = [base[0], *base, base[-1]]
        coords = [f"{frame.sx(x):.1f},{frame.sy(y):.1f}" for x, y in zip(xs, upper, strict=True)]
        coords += [f"{frame.sx(x):.1f},{frame.sy(y):.1f}" for x, y in zip(reversed(xs), reversed(lower), strict=True)]
        body.append(
            f'<polygon points="{" ".join(coords)}" fill="{colors[name]}" fill-opacity="0.8" '
            f'stroke="{colors[name]}" stroke-width="1"><title>{escape(name)}</title></polygon>'
        )
        base = top
    _, plot_top, _, plot_bottom = frame.plot
    column_w = frame.sx(bucket_s) - frame.sx(0.0)
    for i, start in enumerate(starts):
        parts = ", ".join(f"{name} {_fmt(v[i])}" for name, v in layers.items() if v[i])
        tip = f"{_fmt_time(start)} to {_fmt_time(start + bucket_s)}: {_fmt(totals[i])}{unit}" + (
            f" ({parts})" if parts else ""
        )
        body.append(
            f'<rect x="{frame.sx(start):.1f}" y="{plot_top}" width="{column_w:.1f}" height="{plot_bottom - plot_top}" '
            f'fill="#000" fill-opacity="0"><title>{escape(tip)}</title></rect>'
        )
    frame.markers(markers)
    frame.legend()
    return frame.render(body)


def line_chart(
    lines: Sequence[Line],
    *,
    title: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    markers: Sequence[Marker] = (),
    unit: str = "",
    width: int = 960,
    height: int = 260,
    empty_text: str = "nothing recorded",
) -> str:
    """Lines through each series' points (x ascending), with a dot per point for series of few points."""
    points = [pt for line in lines for pt in line.points]
    if not points:
        return _empty(title, width, empty_text)
    xs = [x for x, _ in points]
    span = x_range or (min(xs), max(xs))
    frame = _Frame(
        width=width,
        height=height,
        x_range=span,
        y_max=max(y for _, y in points),
        title=title,
        y_label=y_label,
        legend=[(line.name, line.color) for line in lines],
    )
    frame.axes()
    body: list[str] = []
    for line in lines:
        if not line.points:
            continue
        coords = " ".join(f"{frame.sx(x):.1f},{frame.sy(y):.1f}" for x, y in line.points)
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        body.append(f'<polyline points="{coords}" fill="none" stroke="{line.color}" stroke-width="1.8"{dash}/>')
        for x, y in line.points:
            tip = f"{line.name}: {_fmt(y)}{unit} at {_fmt_time(round(x, 3))}"
            radius = 2.5 if len(line.points) <= 120 else 1.2
            body.append(
                f'<circle cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" r="{radius}" fill="{line.color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    frame.markers(markers)
    frame.legend()
    return frame.render(body)


CHART_CSS = """
svg.chart { max-width: 100%; height: auto; font: 11px system-ui, sans-serif; display: block; margin: 8px 0; }
svg.chart .ct { font-size: 13px; font-weight: 600; fill: #222; }
svg.chart .cg { stroke: #e4e4e4; }
svg.chart .ca { stroke: #888; }
svg.chart .cy { text-anchor: end; fill: #555; }
svg.chart .cx { text-anchor: middle; fill: #555; }
svg.chart .cl { fill: #555; text-anchor: middle; }
svg.chart .cu { fill: #555; text-anchor: end; }
svg.chart .ce { fill: #888; text-anchor: middle; font-style: italic; }
svg.chart .cg-l { fill: #333; }
svg.chart .cm line { stroke: #b00; stroke-dasharray: 4 3; stroke-width: 1.2; }
svg.chart .cm text { fill: #b00; font-weight: 600; }
"""
