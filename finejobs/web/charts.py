"""Server-rendered SVG charts for the console: pure functions from numbers to markup (no I/O, no script).

Every text that goes into the markup is escaped; every coordinate is a finite number (values that are
negative, NaN or infinite are drawn as nothing), so a chart of any data is well-formed SVG.

```python
throughput_chart(activity.since, activity.succeeded, activity.failed)   # stacked bars per minute
lag_chart(activity.since, activity.lag_seconds)                         # a line per minute, gaps where None
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 190
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 22, 24  # the plot's margins (axis labels, legend)
SUCCEEDED, FAILED, LAG = "#1a7f37", "#c62828", "#2255cc"
_LABEL_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720)  # minutes between x labels
MAX_X_LABELS = 7


@dataclass(frozen=True)
class _Frame:
    """Where a chart of ``n`` minutes draws: the plot area and the value at its top."""

    n: int
    top_value: float
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def plot_width(self) -> float:
        return float(self.width - LEFT - RIGHT)

    @property
    def plot_height(self) -> float:
        return float(self.height - TOP - BOTTOM)

    def x(self, minute: float) -> float:
        return LEFT + self.plot_width * minute / max(self.n, 1)

    def y(self, value: float) -> float:
        return TOP + self.plot_height * (1 - min(value, self.top_value) / self.top_value)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (1 for nothing)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return float(step * power)
    return float(10 * power)  # pragma: no cover (10 always fits)


def _clean(value: float | None) -> float | None:
    """A value to draw, or None: negatives, NaN and infinities are not drawn."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _minute(start: datetime, offset: int) -> datetime:
    return (start + timedelta(minutes=offset)).astimezone(UTC)


def count_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def duration_label(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds else "0"
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _open(title: str, frame: _Frame, css: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {frame.width} {frame.height}" '
            f'width="100%" role="img" aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
            f"<title>{escape(title)}</title>"]


def _axes(frame: _Frame, start: datetime, *, fmt: str = "count") -> list[str]:
    """The y grid (0, half, top) with labels, and minute labels on the x axis."""
    out: list[str] = []
    for fraction in (0.0, 0.5, 1.0):
        value = frame.top_value * fraction
        if fmt == "count" and value != int(value):
            continue  # no "2.5 jobs"
        y = frame.y(value)
        text = count_label(value) if fmt == "count" else duration_label(value)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{_n(y)}" x2="{frame.width - RIGHT}" y2="{_n(y)}" '
                   f'stroke="#e4e7ec" stroke-width="1"/>')
        out.append(f'<text class="ylabel" x="{LEFT - 6}" y="{_n(y + 4)}" text-anchor="end" font-size="11" '
                   f'fill="#667085">{escape(text)}</text>')
    base = frame.y(0)
    out.append(f'<line class="axis" x1="{LEFT}" y1="{_n(base)}" x2="{frame.width - RIGHT}" y2="{_n(base)}" '
               f'stroke="#98a2b3" stroke-width="1"/>')
    step = next((s for s in _LABEL_STEPS if frame.n / s <= MAX_X_LABELS), _LABEL_STEPS[-1])
    for offset in range(frame.n + 1):
        moment = _minute(start, offset)
        if (moment.hour * 60 + moment.minute) % step:
            continue
        x = frame.x(offset)
        out.append(f'<line class="tick" x1="{_n(x)}" y1="{_n(base)}" x2="{_n(x)}" y2="{_n(base + 4)}" '
                   f'stroke="#98a2b3" stroke-width="1"/>')
        out.append(f'<text class="xlabel" x="{_n(x)}" y="{_n(base + 16)}" text-anchor="middle" font-size="11" '
                   f'fill="#667085">{moment:%H:%M}</text>')
    return out


def _legend(frame: _Frame, entries: Sequence[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    x = float(frame.width - RIGHT)
    for name, color in reversed(entries):
        x -= 7 * len(name) + 22
        out.append(f'<rect x="{_n(x)}" y="5" width="10" height="10" rx="2" fill="{color}"/>'
                   f'<text x="{_n(x + 14)}" y="14" font-size="11" fill="#344054">{escape(name)}</text>')
    return out


def _empty(frame: _Frame, message: str) -> str:
    return (f'<text class="empty" x="{_n(LEFT + frame.plot_width / 2)}" y="{_n(TOP + frame.plot_height / 2)}" '
            f'text-anchor="middle" font-size="13" fill="#667085">{escape(message)}</text>')


def throughput_chart(start: datetime, succeeded: Sequence[int], failed: Sequence[int], *,
                     width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """Stacked bars, one per minute from ``start``: the jobs that succeeded (below) and failed (above)."""
    n = max(len(succeeded), len(failed), 1)
    ok = [_clean(succeeded[i]) or 0.0 if i < len(succeeded) else 0.0 for i in range(n)]
    bad = [_clean(failed[i]) or 0.0 if i < len(failed) else 0.0 for i in range(n)]
    frame = _Frame(n, nice_ceiling(max(a + b for a, b in zip(ok, bad, strict=True))), width, height)
    total_ok, total_bad = sum(ok), sum(bad)
    title = (f"Jobs finished per minute over the last {n} minutes: {count_label(total_ok)} succeeded, "
             f"{count_label(total_bad)} failed")
    out = _open(title, frame, "chart-svg throughput")
    out += _axes(frame, start)
    slot = frame.plot_width / n
    bar = max(slot * 0.78, 0.5)
    for i in range(n):
        if not ok[i] and not bad[i]:
            continue
        x = frame.x(i) + (slot - bar) / 2
        moment = _minute(start, i)
        out.append(f"<g class=\"bar\"><title>{moment:%H:%M}: {count_label(ok[i])} succeeded, "
                   f"{count_label(bad[i])} failed</title>")
        y_ok = frame.y(ok[i])
        if ok[i]:
            out.append(f'<rect class="ok" x="{_n(x)}" y="{_n(y_ok)}" width="{_n(bar)}" '
                       f'height="{_n(frame.y(0) - y_ok)}" fill="{SUCCEEDED}"/>')
        if bad[i]:
            y_bad = frame.y(ok[i] + bad[i])
            out.append(f'<rect class="bad" x="{_n(x)}" y="{_n(y_bad)}" width="{_n(bar)}" '
                       f'height="{_n(y_ok - y_bad)}" fill="{FAILED}"/>')
        out.append("</g>")
    if not total_ok and not total_bad:
        out.append(_empty(frame, f"no job finished in the last {n} minutes"))
    out += _legend(frame, (("succeeded", SUCCEEDED), ("failed", FAILED)))
    out.append("</svg>")
    return Markup("".join(out))


def lag_chart(start: datetime, lag_seconds: Sequence[float | None], *, width: int = WIDTH,
              height: int = HEIGHT) -> Markup:
    """A line, one point per minute from ``start``: the longest wait (start - due) of the jobs that finished
    then; no point (a gap) where none did."""
    n = max(len(lag_seconds), 1)
    values = [_clean(lag_seconds[i]) if i < len(lag_seconds) else None for i in range(n)]
    drawn = [v for v in values if v is not None]
    frame = _Frame(n, nice_ceiling(max(drawn, default=0.0)), width, height)
    worst = max(drawn, default=None)
    title = (f"Lag per minute over the last {n} minutes: "
             + ("no job finished" if worst is None else f"at most {duration_label(worst)}"))
    out = _open(title, frame, "chart-svg lag")
    out += _axes(frame, start, fmt="duration")
    slot = frame.plot_width / n
    runs: list[list[tuple[float, float, int]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((frame.x(i) + slot / 2, frame.y(value), i))
    for run in (r for r in runs if r):
        if len(run) > 1:
            points = " ".join(f"{_n(x)},{_n(y)}" for x, y, _ in run)
            out.append(f'<polyline class="line" points="{points}" fill="none" stroke="{LAG}" stroke-width="2" '
                       f'stroke-linejoin="round"/>')
        for x, y, i in run:
            value = values[i] or 0.0
            out.append(f'<circle class="point" cx="{_n(x)}" cy="{_n(y)}" r="{2.5 if len(run) > 1 else 3.5}" '
                       f'fill="{LAG}"><title>{_minute(start, i):%H:%M}: {escape(duration_label(value))}'
                       f"</title></circle>")
    if worst is None:
        out.append(_empty(frame, f"no job finished in the last {n} minutes"))
    out += _legend(frame, (("longest wait (start - due)", LAG),))
    out.append("</svg>")
    return Markup("".join(out))
