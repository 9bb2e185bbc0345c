"""The console's SVG charts: well-formed SVG for any data (empty, zero, huge, NaN, negative), bars and lines
where the data says, minute labels on the x axis, every text escaped."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from finejobs.web.charts import duration_label, lag_chart, nice_ceiling, throughput_chart

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 11, 22, 7, 1, tzinfo=UTC)  # the hour window ending in the 08:00 minute


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


def numbers(root: ET.Element) -> list[float]:
    found: list[float] = []
    for element in root.iter():
        for name, value in element.attrib.items():
            if element.tag == f"{SVG}svg":
                continue
            if name in {"x", "y", "x1", "x2", "y1", "y2", "width", "height", "cx", "cy", "r"}:
                found.append(float(value))
            if name == "points":
                found += [float(v) for v in re.split(r"[ ,]", value)]
    return found


def x_labels(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "xlabel"]


def test_throughput_draws_stacked_bars_per_minute_with_minute_labels() -> None:
    succeeded = [0] * 60
    failed = [0] * 60
    succeeded[10], failed[10], succeeded[59] = 30, 5, 12
    root = parse(throughput_chart(START, succeeded, failed))
    bars = list(root.iter(f"{SVG}g"))
    assert len(bars) == 2, "one bar per minute with jobs"
    assert bars[0].find(f"{SVG}title").text == "07:11: 30 succeeded, 5 failed"  # type: ignore[union-attr]
    ok = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "ok"]
    bad = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bad"]
    assert len(ok) == 2 and len(bad) == 1
    assert float(ok[0].get("height", 0)) == pytest.approx(6 * float(bad[0].get("height", 0)))
    assert float(bad[0].get("y", 0)) + float(bad[0].get("height", 0)) == pytest.approx(float(ok[0].get("y", 0)))
    assert x_labels(root) == ["07:10", "07:20", "07:30", "07:40", "07:50", "08:00"]
    assert "35 succeeded" not in str(root) and "42 succeeded, 5 failed" in root.get("aria-label", "")
    assert all(math.isfinite(n) for n in numbers(root))


def test_the_y_axis_ends_on_a_round_number_above_the_tallest_bar() -> None:
    root = parse(throughput_chart(START, [37] + [0] * 59, [0] * 60))
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "ylabel"]
    assert labels == ["0", "25", "50"]
    assert nice_ceiling(37) == 50 and nice_ceiling(0) == 1 and nice_ceiling(1) == 1 and nice_ceiling(101) == 200


def test_no_data_draws_empty_axes_and_says_so() -> None:
    for markup in (throughput_chart(START, [0] * 60, [0] * 60), throughput_chart(START, [], []),
                   lag_chart(START, [None] * 60), lag_chart(START, [])):
        root = parse(markup)
        assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") in ("ok", "bad")]
        assert not list(root.iter(f"{SVG}polyline")) and not list(root.iter(f"{SVG}circle"))
        assert any("no job finished" in (t.text or "") for t in root.iter(f"{SVG}text"))
        assert all(math.isfinite(n) for n in numbers(root))


def test_bad_values_are_not_drawn_and_never_make_nan() -> None:
    nan, inf = float("nan"), float("inf")
    root = parse(throughput_chart(START, [nan, -3, inf, 4], [inf, nan, 2, -1]))  # type: ignore[list-item]
    assert all(math.isfinite(n) for n in numbers(root))
    assert "nan" not in str(ET.tostring(root)).lower()
    lag = parse(lag_chart(START, [nan, -1.0, inf, 3.0, None, 5.0]))
    assert all(math.isfinite(n) for n in numbers(lag))
    assert len(list(lag.iter(f"{SVG}circle"))) == 2


def test_lag_is_a_line_with_gaps_where_no_job_finished() -> None:
    lag: list[float | None] = [None] * 60
    lag[0:3] = [2.0, 4.0, 90.0]
    lag[40] = 0.25
    root = parse(lag_chart(START, lag))
    [line] = list(root.iter(f"{SVG}polyline"))
    assert len(line.get("points", "").split()) == 3, "one run of three minutes, then a gap"
    points = list(root.iter(f"{SVG}circle"))
    assert len(points) == 4
    assert [p.find(f"{SVG}title").text for p in points][2:] == ["07:03: 90 s", "07:41: 250 ms"]  # type: ignore[union-attr]
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "ylabel"]
    assert labels == ["0", "50 s", "100 s"]
    assert "at most 90 s" in root.get("aria-label", "")


@pytest.mark.parametrize("minutes", [1, 5, 60, 180, 1440])
def test_any_window_gets_a_few_minute_labels(minutes: int) -> None:
    root = parse(throughput_chart(START, [1] * minutes, [0] * minutes))
    labels = x_labels(root)
    assert 1 <= len(labels) <= 8 or minutes == 1
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in labels)
    assert len(list(root.iter(f"{SVG}g"))) == minutes


def test_durations_read_as_people_write_them() -> None:
    assert [duration_label(s) for s in (0, 0.25, 1.5, 12, 90, 600, 9000)] == [
        "0", "250 ms", "1.5 s", "12 s", "90 s", "10 min", "2 h"]


def test_the_markup_is_escaped_svg_not_text() -> None:
    markup = throughput_chart(START, [1], [0])
    assert markup.__html__() == str(markup), "Markup: rendered as is by the templates"
    assert "<script" not in markup and "&lt;" not in markup
