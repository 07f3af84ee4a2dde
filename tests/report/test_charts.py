"""The SVG chart helpers: round ticks, one mark per value with a tooltip, event markers, escaped text, and a
placeholder instead of an empty frame."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from harness.report.charts import Line, Marker, color_for, line_chart, nice_ticks, stacked_area, stacked_bars


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(0, 40) == [0, 10, 20, 30, 40]
    assert nice_ticks(0, 37) == [0, 10, 20, 30, 40]
    assert nice_ticks(0, 0.9) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(3, 1234, 8)
    assert ticks[0] <= 3 and ticks[-1] >= 1234
    with pytest.raises(ValueError):
        nice_ticks(0, float("inf"))


def _svg(text: str) -> ET.Element:
    # the charts are inline HTML SVG (no namespace): they must still be well-formed XML
    return ET.fromstring(text)


def test_stacked_bars_draw_one_rect_per_non_zero_value_with_a_tooltip() -> None:
    layers = {"app-0": [1.0, 0.0, 3.0], "app-1": [2.0, 2.0, 0.0]}
    svg = _svg(
        stacked_bars(
            [0.0, 5.0, 10.0],
            5.0,
            layers,
            colors={"app-0": color_for(0), "app-1": color_for(1)},
            title="sessions",
            y_label="n",
            markers=[Marker(7.0, "e1", "e1: 7s scale app 5")],
        )
    )
    bars = [r for r in svg.iter("rect") if r.find("title") is not None]
    assert len(bars) == 4
    tips = sorted(str(r.findtext("title")) for r in bars)
    assert tips[0] == "app-0: 1 from 0s to 5s"
    marker = next(g for g in svg.iter("g") if g.get("class") == "cm")
    assert marker.findtext("title") == "e1: 7s scale app 5" and marker.findtext("text") == "e1"


def test_stacked_area_draws_a_polygon_per_non_empty_layer_and_a_tooltip_per_bucket() -> None:
    layers = {"app-0": [1.0, 2.5, 0.0], "app-1 (removed)": [0.5, 0.0, 0.0], "app-2": [0.0, 0.0, 0.0]}
    colors = {name: color_for(i) for i, name in enumerate(layers)}
    svg = _svg(
        stacked_area(
            [0.0, 5.0, 10.0],
            5.0,
            layers,
            colors=colors,
            title="live",
            y_label="n",
            markers=[Marker(7.0, "x1", "x1: app-2 exited")],
            unit=" live",
        )
    )
    areas = list(svg.iter("polygon"))
    assert [a.findtext("title") for a in areas] == ["app-0", "app-1 (removed)"]
    assert [a.get("fill") for a in areas] == [colors["app-0"], colors["app-1 (removed)"]]
    tips = [r.findtext("title") for r in svg.iter("rect") if r.find("title") is not None]
    assert tips == [
        "0s to 5s: 1.5 live (app-0 1, app-1 (removed) 0.5)",
        "5s to 10s: 2.5 live (app-0 2.5)",
        "10s to 15s: 0 live",
    ]
    legend = [t.text for t in svg.iter("text") if t.get("class") == "cg-l"]
    assert legend == list(layers)  # every pod keeps its colour in the legend, even one with nothing live
    marker = next(g for g in svg.iter("g") if g.get("class") == "cm")
    assert marker.findtext("title") == "x1: app-2 exited"


def test_markers_outside_the_time_range_are_left_out() -> None:
    svg = stacked_bars(
        [0.0],
        5.0,
        {"a": [1.0]},
        colors={"a": "#000"},
        title="t",
        y_label="n",
        markers=[Marker(50.0, "e9")],
    )
    assert "e9" not in svg


def test_text_is_escaped() -> None:
    svg = line_chart(
        [Line("<script>alert(1)</script>", [(0.0, 1.0), (1.0, 2.0)], "#000")],
        title='a "title" & <more>',
        y_label="ms",
    )
    assert "<script>" not in svg
    root = _svg(svg)
    assert any(t.text == "<script>alert(1)</script>" for t in root.iter("text"))


def test_line_chart_draws_a_polyline_per_series_and_a_dot_per_point() -> None:
    lines = [Line("p50", [(0.0, 1.0), (5.0, 2.0)], "#111"), Line("p99", [(0.0, 3.0), (5.0, 9.0)], "#222", dashed=True)]
    root = _svg(line_chart(lines, title="latency", y_label="ms", x_range=(0.0, 10.0), markers=[Marker(5.0, "e1")]))
    assert len(list(root.iter("polyline"))) == 2
    assert len(list(root.iter("circle"))) == 4
    assert sum(1 for g in root.iter("g") if g.get("class") == "cm") == 1


def test_empty_charts_say_so_instead_of_drawing_a_frame() -> None:
    svg = stacked_bars([0.0, 5.0], 5.0, {"a": [0.0, 0.0]}, colors={"a": "#000"}, title="t", y_label="n")
    assert "nothing recorded" in svg and "<rect" not in svg
    assert "no data here" in line_chart([], title="t", y_label="ms", empty_text="no data here")
    area = stacked_area([0.0], 5.0, {"a": [0.0]}, colors={"a": "#000"}, title="t", y_label="n", empty_text="none live")
    assert "none live" in area and "<polygon" not in area


def test_a_long_time_axis_is_labelled_in_one_unit() -> None:
    root = _svg(line_chart([Line("p50", [(0.0, 1.0), (3600.0, 2.0)], "#111")], title="t", y_label="ms"))
    labels = [t.text or "" for t in root.iter("text") if t.get("class") == "cx"]
    assert labels and all(label.endswith("m") for label in labels)
    assert "60m" in labels
    short = _svg(line_chart([Line("p50", [(0.0, 1.0), (90.0, 2.0)], "#111")], title="t", y_label="ms"))
    assert [t.text for t in short.iter("text") if t.get("class") == "cx"][:3] == ["0s", "20s", "40s"]
