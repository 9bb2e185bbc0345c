"""RFC 5545 recurrence rules (python-dateutil), with friendlier constructors for the common calendars."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from finejobs._wallclock import (
    WallClockRule,
    bounds_from_spec,
    iso,
    local,
    parse_time,
    resolve,
    tz_name,
    zone,
)

_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")
_FREQS = {"YEARLY": "year", "MONTHLY": "month", "WEEKLY": "week", "DAILY": "day", "HOURLY": "hour",
          "MINUTELY": "minute", "SECONDLY": "second"}
_PERIOD = {"SECONDLY": timedelta(seconds=1), "MINUTELY": timedelta(minutes=1), "HOURLY": timedelta(hours=1),
           "DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}
_DEFAULT_ANCHOR = datetime(2001, 1, 1)  # a Monday: FREQ=WEEKLY means Mondays, MONTHLY the 1st, at 00:00
_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", -1: "last", -2: "second-to-last"}


def _day_token(value: str) -> str:
    text = str(value).strip().upper()
    for i, token in enumerate(_DAYS):
        if text in (token, _DAY_NAMES[i][:3].upper(), _DAY_NAMES[i].upper()):
            return token
    raise ValueError(f"not a day of the week: {value!r} (use MO, TU, ... or Monday, ...)")


def _parse_moment(value: str, tz: ZoneInfo, *, end_of_day: bool) -> datetime:
    """An RFC 5545 DATE or DATE-TIME (``...Z`` is UTC, otherwise local in ``tz``) as a UTC instant."""
    text = value.strip()
    try:
        if re.fullmatch(r"\d{8}", text):
            day = datetime.strptime(text, "%Y%m%d")
            wall = day + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else day
            return resolve(wall, tz, False)[0]
        if re.fullmatch(r"\d{8}T\d{6}Z", text):
            return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if re.fullmatch(r"\d{8}T\d{6}", text):
            return resolve(datetime.strptime(text, "%Y%m%dT%H%M%S"), tz, False)[0]
    except ValueError:
        pass
    raise ValueError(f"not an RFC 5545 date or date-time: {value!r} (e.g. 20300121 or 20300121T090000Z)")


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class RRule(WallClockRule):
    """An RFC 5545 RRULE (``FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0``), evaluated in ``tz``.

    The text may also be an iCalendar block with a ``DTSTART[;TZID=...]:...`` line and an ``RRULE:`` line.
    ``start`` (or DTSTART) anchors the rule: INTERVAL counts from it and parts the rule leaves out (the time
    of day, the weekday...) are taken from it, as RFC 5545 says. Without one, the anchor is Monday
    2001-01-01 00:00 in ``tz``. COUNT counts fires; UNTIL is inclusive (a DATE means the end of that day).
    """

    type = "rrule"

    def __init__(self, text: str, tz: str | ZoneInfo | None = None, *, start: datetime | None = None) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("an RRULE must be a non-empty string such as 'FREQ=WEEKLY;BYDAY=MO'")
        rule_text: str | None = None
        dtstart: tuple[str, str | None] | None = None
        for raw in text.strip().splitlines():
            line = raw.strip()
            upper = line.upper()
            if not line:
                continue
            if upper.startswith("DTSTART"):
                head, _, value = line.partition(":")
                tzid = re.search(r"TZID=([^;:]+)", head, re.IGNORECASE)
                dtstart = (value, tzid.group(1) if tzid else None)
            elif upper.startswith("RRULE:") or upper.startswith("FREQ="):
                if rule_text is not None:
                    raise ValueError("only one RRULE per rule: make one schedule per RRULE")
                rule_text = line.split(":", 1)[1] if upper.startswith("RRULE:") else line
            else:
                raise ValueError(f"unsupported line {line!r}: give FREQ=... with an optional DTSTART line "
                                 "(RDATE, EXDATE and EXRULE are not supported)")
        if rule_text is None:
            raise ValueError(f"no RRULE in {text!r}: expected something like 'FREQ=WEEKLY;BYDAY=MO'")
        if tz is None and dtstart is not None and dtstart[1]:
            tz = dtstart[1]
        zone_name = tz_name(tz)
        if start is None and dtstart is not None:
            start = _parse_moment(dtstart[0], zone(dtstart[1] or zone_name), end_of_day=False)
        parts: dict[str, str] = {}
        for item in rule_text.strip().strip(";").split(";"):
            key, eq, value = item.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise ValueError(f"bad RRULE part {item!r} in {rule_text!r}")
            parts[key.strip().upper()] = value.strip().upper()
        if parts.get("FREQ") not in _FREQS:
            raise ValueError(f"RRULE {rule_text!r} needs FREQ= one of {', '.join(_FREQS)}")
        count_text = parts.pop("COUNT", None)
        until_text = parts.pop("UNTIL", None)
        try:
            count = int(count_text) if count_text is not None else None
        except ValueError:
            raise ValueError(f"bad COUNT in RRULE {rule_text!r}") from None
        until = _parse_moment(until_text, zone(zone_name), end_of_day=True) if until_text else None
        self.interval = int(parts.get("INTERVAL", "1")) if parts.get("INTERVAL", "1").isdigit() else 0
        if self.interval < 1:
            raise ValueError(f"bad INTERVAL in RRULE {rule_text!r}")
        if self.interval > 1 and start is None:
            raise ValueError(f"RRULE {rule_text!r} has INTERVAL={self.interval}: give start= (or DTSTART) "
                             "to say which periods count")
        super().__init__(tz=zone_name, start=start, until=until, count=count)
        self.text = ";".join(f"{k}={v}" for k, v in (("FREQ", parts["FREQ"]), *(
            (k, v) for k, v in parts.items() if k != "FREQ")))
        if count_text is not None:
            self.text += f";COUNT={count}"
        if until_text is not None:
            self.text += f";UNTIL={until_text}"
        self.parts = parts
        self.freq = parts["FREQ"]
        self.both = self.freq in ("HOURLY", "MINUTELY", "SECONDLY")
        self._anchor = local(self.start, self.zone) if self.start is not None else _DEFAULT_ANCHOR
        unbounded = ";".join(f"{k}={v}" for k, v in parts.items())
        try:
            base = du.rrulestr(unbounded, dtstart=self._anchor)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"invalid RRULE {rule_text!r}: {exc}") from None
        assert isinstance(base, du.rrule)
        self._base: du.rrule = base
        self._anchored: dict[datetime, du.rrule] = {}

    def _rule_near(self, after: datetime) -> du.rrule:
        """The same rule anchored a whole number of periods later, so dateutil need not walk from the start."""
        period = _PERIOD.get(self.freq)
        if period is None or after - self._anchor <= 4 * period * self.interval:
            return self._base
        step = period * self.interval
        anchor = self._anchor + ((after - self._anchor) // step - 2) * step
        rule = self._anchored.get(anchor)
        if rule is None:
            if len(self._anchored) > 64:
                self._anchored.clear()
            rule = self._anchored[anchor] = self._base.replace(dtstart=anchor)
        return rule

    def candidates(self, after: datetime) -> Iterator[datetime]:
        rule = self._rule_near(after)
        yield from rule.xafter(max(after, self._anchor - timedelta(microseconds=1)), inc=False)

    # ---------------------------------------------------------------- friendlier constructors

    @classmethod
    def _build(cls, parts: list[str], *, at: str | time, tz: str | ZoneInfo | None, start: datetime | None,
               count: int | None, until: datetime | None, every: int) -> RRule:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        clock = parse_time(at)
        if every > 1:
            parts.append(f"INTERVAL={every}")
        parts += [f"BYHOUR={clock.hour}", f"BYMINUTE={clock.minute}", f"BYSECOND={clock.second}"]
        if count is not None:
            parts.append(f"COUNT={count}")
        if until is not None:
            parts.append(f"UNTIL={_utc_stamp(until)}")
        return cls(";".join(parts), tz=tz, start=start)

    @classmethod
    def daily(cls, *, at: str | time = "00:00", every: int = 1, tz: str | ZoneInfo | None = "UTC",
              start: datetime | None = None, count: int | None = None, until: datetime | None = None) -> RRule:
        """Every ``every`` days at ``at``."""
        return cls._build(["FREQ=DAILY"], at=at, tz=tz, start=start, count=count, until=until, every=every)

    @classmethod
    def weekly(cls, days: str | Sequence[str], *, at: str | time = "00:00", every: int = 1,
               tz: str | ZoneInfo | None = "UTC", start: datetime | None = None, count: int | None = None,
               until: datetime | None = None) -> RRule:
        """On the given days (``"MO,WE"`` or ``["Monday"]``) every ``every`` weeks, at ``at``."""
        tokens = [_day_token(d) for d in (days.split(",") if isinstance(days, str) else days)]
        if not tokens:
            raise ValueError("weekly needs at least one day")
        parts = ["FREQ=WEEKLY", "BYDAY=" + ",".join(dict.fromkeys(tokens))]
        return cls._build(parts, at=at, tz=tz, start=start, count=count, until=until, every=every)

    @classmethod
    def weekdays(cls, *, at: str | time = "00:00", tz: str | ZoneInfo | None = "UTC",
                 start: datetime | None = None, count: int | None = None, until: datetime | None = None) -> RRule:
        """Monday to Friday at ``at``."""
        return cls.weekly(_DAYS[:5], at=at, tz=tz, start=start, count=count, until=until)

    @classmethod
    def monthly(cls, *, day: int | None = None, weekday: str | None = None, nth: int = 1,
                at: str | time = "00:00", every: int = 1, tz: str | ZoneInfo | None = "UTC",
                start: datetime | None = None, count: int | None = None, until: datetime | None = None) -> RRule:
        """On ``day`` of the month (-1 = the last), or on the ``nth`` ``weekday`` (-1 = the last)."""
        parts = ["FREQ=MONTHLY", _day_part(day, weekday, nth)]
        return cls._build(parts, at=at, tz=tz, start=start, count=count, until=until, every=every)

    @classmethod
    def yearly(cls, *, month: int, day: int | None = None, weekday: str | None = None, nth: int = 1,
               at: str | time = "00:00", tz: str | ZoneInfo | None = "UTC", start: datetime | None = None,
               count: int | None = None, until: datetime | None = None) -> RRule:
        """Each year on ``day`` of ``month`` (21 January), or on its ``nth`` ``weekday`` (first Sunday of March)."""
        if not isinstance(month, int) or not 1 <= month <= 12:
            raise ValueError(f"month must be 1 to 12, got {month!r}")
        parts = ["FREQ=YEARLY", f"BYMONTH={month}", _day_part(day, weekday, nth)]
        return cls._build(parts, at=at, tz=tz, start=start, count=count, until=until, every=1)

    # ---------------------------------------------------------------- words and specs

    def describe(self) -> str:
        try:
            return f"{self._words()} ({self.tz}){self._bounds_words()}"
        except Exception:  # an unusual combination: the rule itself says it best
            return f"RRULE {self.text} ({self.tz}){self._bounds_words()}"

    def _words(self) -> str:
        p = self.parts
        unit = _FREQS[self.freq]
        words = [f"every {unit}" if self.interval == 1 else f"every {self.interval} {unit}s"]
        months = [int(m) for m in p["BYMONTH"].split(",")] if "BYMONTH" in p else []
        monthdays = [int(d) for d in p["BYMONTHDAY"].split(",")] if "BYMONTHDAY" in p else []
        if len(months) == 1 and len(monthdays) == 1 and monthdays[0] > 0 and "BYDAY" not in p:
            words.append(f"on {monthdays[0]} {_MONTH_NAMES[months[0] - 1]}")
            months, monthdays = [], []
        if "BYDAY" in p:
            words.append("on " + _days_words(p["BYDAY"].split(",")))
        if monthdays:
            words.append("on day " + ", ".join("the last" if d == -1 else str(d) for d in monthdays))
        if months:
            words.append("in " + ", ".join(_MONTH_NAMES[m - 1] for m in months))
        for key in ("BYSETPOS", "BYWEEKNO", "BYYEARDAY", "WKST"):
            if key in p:
                words.append(f"{key}={p[key]}")
        words.append(_times_words(p, self._anchor))
        return " ".join(w for w in words if w)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "rrule": self.text, "tz": self.tz, "start": iso(self.start)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RRule:
        bounds = bounds_from_spec(spec)
        return cls(spec["rrule"], tz=bounds["tz"], start=bounds["start"])


def _day_part(day: int | None, weekday: str | None, nth: int) -> str:
    if (day is None) == (weekday is None):
        raise ValueError("give either day= (of the month) or weekday= (with nth=)")
    if day is not None:
        if isinstance(day, bool) or not isinstance(day, int) or not (1 <= day <= 31 or -31 <= day <= -1):
            raise ValueError(f"day must be 1 to 31, or -1 (the last) to -31, got {day!r}")
        return f"BYMONTHDAY={day}"
    if isinstance(nth, bool) or not isinstance(nth, int) or nth == 0 or not -5 <= nth <= 5:
        raise ValueError(f"nth must be 1 to 5, or -1 (the last) to -5, got {nth!r}")
    assert weekday is not None
    return f"BYDAY={nth}{_day_token(weekday)}"


def _days_words(tokens: list[str]) -> str:
    if sorted(tokens, key=_token_order) == list(_DAYS[:5]):
        return "weekdays"
    words = []
    for token in tokens:
        match = re.fullmatch(r"([+-]?\d+)?([A-Z]{2})", token)
        if not match:
            return ",".join(tokens)
        name = _DAY_NAMES[_DAYS.index(match.group(2))]
        if match.group(1):
            n = int(match.group(1))
            words.append(f"the {_ORDINALS.get(n, f'#{n}')} {name}")
        else:
            words.append(name)
    return ", ".join(words)


def _token_order(token: str) -> int:
    return _DAYS.index(token[-2:]) if token[-2:] in _DAYS else 99


def _times_words(parts: Mapping[str, str], anchor: datetime) -> str:
    def values(key: str, default: int) -> list[int]:
        return [int(v) for v in parts[key].split(",")] if key in parts else [default]

    if parts["FREQ"] in ("HOURLY", "MINUTELY", "SECONDLY") and "BYHOUR" not in parts:
        return ""
    hours, minutes, seconds = values("BYHOUR", anchor.hour), values("BYMINUTE", anchor.minute), values(
        "BYSECOND", anchor.second)
    if len(hours) * len(minutes) * len(seconds) > 6:
        return "at several times"
    times = [time(h, m, s) for h in hours for m in minutes for s in seconds]
    return "at " + ", ".join(t.isoformat("minutes" if t.second == 0 else "seconds") for t in sorted(times))
