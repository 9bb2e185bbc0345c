"""RFC 5545 recurrence rules (python-dateutil), with friendlier constructors for the common calendars.

dateutil looks for the next occurrence until year 9999 when none comes (a rule for 30 February walks
8,000 years, seconds of CPU for FREQ=DAILY). finejobs bounds that work twice:

- at construction, a rule whose days can never occur (BYMONTH=2;BYMONTHDAY=30, BYMONTHDAY=32, a BYSETPOS
  beyond every period's set...) is refused: its day filters are tried on one 400-year Gregorian cycle
  (after which weekdays and leap years repeat) with FREQ=YEARLY, a few milliseconds;
- each search for the next occurrence looks at most ``_HORIZON_YEARS`` (400) years ahead (counted in the
  months, or years, dateutil walks): a rule with no occurrence in that window has no next fire.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from finejobs._wallclock import (
    WallClockRule,
    aware,
    bounds_from_spec,
    iso,
    local,
    parse_time,
    resolve,
    tz_name,
    zone,
)
from finejobs.errors import InvalidJobOptions
from finejobs.limits import MAX_DURATION, RULE_HORIZON_YEARS

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
# The longest INTERVAL per FREQ: one period at most MAX_DURATION (100 years), as for Every.
_MAX_INTERVAL = {"YEARLY": MAX_DURATION.days // 365, "MONTHLY": MAX_DURATION.days // 365 * 12,
                 "WEEKLY": MAX_DURATION.days // 7, "DAILY": MAX_DURATION.days, "HOURLY": MAX_DURATION.days * 24,
                 "MINUTELY": MAX_DURATION.days * 1440, "SECONDLY": MAX_DURATION.days * 86400}
_HORIZON_YEARS = RULE_HORIZON_YEARS
_DAY_KEYS = ("BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYEASTER")
_NTH = re.compile(r"^([+-]?\d+)?([A-Z]{2})$")


class _Horizon(Exception):
    """A search for the next occurrence went past its horizon."""


_budget = threading.local()  # .left: how many more months (years for FREQ=YEARLY) this search may walk


class _BoundedRule(du.rrule):
    """A dateutil rrule whose iteration can be cut short: dateutil reads ``_byeaster`` each time it starts
    a new month (a new year for FREQ=YEARLY, a new period for MONTHLY), so reading it spends one unit of
    the current search's budget. Outside a bounded search (``_budget.left`` unset) it is a plain rrule.
    If a dateutil release stopped reading it, searches would only lose their bound, not their results."""

    @property
    def _byeaster(self) -> Any:
        left = getattr(_budget, "left", None)
        if left is not None:
            if left <= 0:
                raise _Horizon
            _budget.left = left - 1
        return self.__dict__["_byeaster_value"]

    @_byeaster.setter
    def _byeaster(self, value: Any) -> None:
        self.__dict__["_byeaster_value"] = value

    def replace(self, **kwargs: Any) -> _BoundedRule:
        return _bounded(super().replace(**kwargs))


def _bounded(rule: du.rrule) -> _BoundedRule:
    """``rule`` as a _BoundedRule (the same arguments, as dateutil's own ``replace`` rebuilds it)."""
    state = vars(rule)
    arguments: dict[str, Any] = {name: state[f"_{name}"] for name in ("interval", "count", "dtstart", "freq",
                                                                      "until", "wkst")}
    arguments.update(state["_original_rule"], cache=False)
    return _BoundedRule(**arguments)


def _next_within(iterator: Iterator[datetime], budget: int) -> datetime | None:
    """The iterator's next item, or None if it ends or walks more than ``budget`` months (or years)."""
    _budget.left = budget
    try:
        return next(iterator, None)
    except _Horizon:
        return None
    except (OverflowError, ValueError):  # dateutil at the end of the calendar
        return None
    finally:
        _budget.left = None


def _day_token(value: str) -> str:
    text = str(value).strip().upper()
    for i, token in enumerate(_DAYS):
        if text in (token, _DAY_NAMES[i][:3].upper(), _DAY_NAMES[i].upper()):
            return token
    raise InvalidJobOptions(f"not a day of the week: {value!r} (use MO, TU, ... or Monday, ...)")


def _parse_moment(value: str, tz: ZoneInfo, *, end_of_day: bool, name: str) -> datetime:
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
    except OverflowError:
        raise InvalidJobOptions(f"{name} ({value}) is outside the supported time range") from None
    except ValueError:
        pass
    raise InvalidJobOptions(f"{name}: not an RFC 5545 date or date-time: {value!r} "
                            "(e.g. 20300121 or 20300121T090000Z)"[:300])


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
            raise InvalidJobOptions("an RRULE must be a non-empty string such as 'FREQ=WEEKLY;BYDAY=MO'")
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
                    raise InvalidJobOptions("only one RRULE per rule: make one schedule per RRULE")
                rule_text = line.split(":", 1)[1] if upper.startswith("RRULE:") else line
            else:
                raise InvalidJobOptions(f"unsupported line {line!r}: give FREQ=... with an optional DTSTART line "
                                 "(RDATE, EXDATE and EXRULE are not supported)")
        if rule_text is None:
            raise InvalidJobOptions(f"no RRULE in {text!r}: expected something like 'FREQ=WEEKLY;BYDAY=MO'")
        if tz is None and dtstart is not None and dtstart[1]:
            tz = dtstart[1]
        zone_name = tz_name(tz)
        if start is None and dtstart is not None:
            start = _parse_moment(dtstart[0], zone(dtstart[1] or zone_name), end_of_day=False, name="DTSTART")
        parts: dict[str, str] = {}
        for item in rule_text.strip().strip(";").split(";"):
            key, eq, value = item.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise InvalidJobOptions(f"bad RRULE part {item!r} in {rule_text!r}")
            parts[key.strip().upper()] = value.strip().upper()
        if parts.get("FREQ") not in _FREQS:
            raise InvalidJobOptions(f"RRULE {rule_text!r} needs FREQ= one of {', '.join(_FREQS)}")
        count_text = parts.pop("COUNT", None)
        until_text = parts.pop("UNTIL", None)
        try:
            count = int(count_text) if count_text is not None and len(count_text) <= 30 else None
        except ValueError:
            count = None
        if count_text is not None and count is None:
            raise InvalidJobOptions(f"bad COUNT in RRULE {rule_text!r}"[:300])
        until = (_parse_moment(until_text, zone(zone_name), end_of_day=True, name="UNTIL")
                 if until_text else None)
        self.interval = int(parts.get("INTERVAL", "1")) if parts.get("INTERVAL", "1").isdigit() else 0
        if self.interval < 1:
            raise InvalidJobOptions(f"bad INTERVAL in RRULE {rule_text!r}"[:300])
        if self.interval > _MAX_INTERVAL[parts["FREQ"]]:
            raise InvalidJobOptions(f"INTERVAL={self.interval} with FREQ={parts['FREQ']} is over the limit of "
                                    f"{_MAX_INTERVAL[parts['FREQ']]:,} (one period at most 100 years)")
        if self.interval > 1 and start is None:
            raise InvalidJobOptions(f"RRULE {rule_text!r} has INTERVAL={self.interval}: give start= (or DTSTART) "
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
            assert isinstance(base, du.rrule)
            self._base: du.rrule = _bounded(base)
        except (ValueError, TypeError, KeyError, OverflowError, IndexError) as exc:
            raise InvalidJobOptions(f"invalid RRULE {rule_text!r}: {exc}"[:500]) from None
        self._anchored: dict[datetime, du.rrule] = {}
        self._budget = _HORIZON_YEARS + 2 if self.freq == "YEARLY" else 12 * _HORIZON_YEARS + 2
        self._check_it_can_fire(rule_text)

    def _check_it_can_fire(self, rule_text: str) -> None:
        """Refuse a rule whose days never occur, or whose BYSETPOS is beyond every period's set."""
        p = self.parts
        sizes = {k: len(p[k].split(",")) if k in p else 1 for k in ("BYHOUR", "BYMINUTE", "BYSECOND")}
        times = {"HOURLY": sizes["BYMINUTE"] * sizes["BYSECOND"], "MINUTELY": sizes["BYSECOND"],
                 "SECONDLY": 1}.get(self.freq, sizes["BYHOUR"] * sizes["BYMINUTE"] * sizes["BYSECOND"])
        if "BYSETPOS" in p:
            most = self._days_per_period() * times
            positions = [int(v) for v in p["BYSETPOS"].split(",") if v.lstrip("+-").isdigit()]
            if positions and all(abs(v) > most for v in positions):
                raise InvalidJobOptions(f"RRULE {rule_text!r} never fires: BYSETPOS={p['BYSETPOS']} is beyond the "
                                        f"at most {most} occurrence(s) of each {_FREQS[self.freq]}"[:500])
        probe = dict(p)
        for key in ("FREQ", "INTERVAL", "BYSETPOS", "BYHOUR", "BYMINUTE", "BYSECOND"):
            probe.pop(key, None)
        if not any(k in probe for k in _DAY_KEYS):  # dateutil's defaults: the anchor's day
            if self.freq == "MONTHLY":
                probe["BYMONTHDAY"] = str(self._anchor.day)
            elif self.freq == "WEEKLY":
                probe["BYDAY"] = _DAYS[self._anchor.weekday()]
            elif self.freq != "YEARLY":
                probe["BYDAY"] = ",".join(_DAYS)  # every day (and no default from the anchor)
        elif "BYDAY" in probe and self.freq not in ("YEARLY", "MONTHLY"):  # "1MO" means "MO" above MONTHLY
            probe["BYDAY"] = ",".join(dict.fromkeys(t[-2:] for t in probe["BYDAY"].split(",")))
        elif "BYDAY" in probe and self.freq == "MONTHLY" and "BYMONTH" not in probe:
            probe["BYMONTH"] = ",".join(str(m) for m in range(1, 13))  # so that "-1MO" is within each month
        text = ";".join(["FREQ=YEARLY", *(f"{k}={v}" for k, v in probe.items()), "BYHOUR=0", "BYMINUTE=0",
                         "BYSECOND=0"])
        try:
            day_rule = du.rrulestr(text, dtstart=self._anchor.replace(hour=0, minute=0, second=0, microsecond=0))
            assert isinstance(day_rule, du.rrule)
            days = _bounded(day_rule)
            first = _next_within(iter(days), _HORIZON_YEARS + 2)
        except (ValueError, TypeError, KeyError, OverflowError, IndexError):
            return  # the rule itself was accepted by dateutil: let the search decide
        if first is None:
            raise InvalidJobOptions(f"RRULE {rule_text!r} never fires: no day matches its BY... parts"[:500])

    def _days_per_period(self) -> int:
        """At most how many days one period (year, month, week, day...) of the rule holds."""
        p = self.parts

        def n(key: str) -> int:
            return len(p[key].split(","))

        if self.freq not in ("YEARLY", "MONTHLY", "WEEKLY"):
            return 1
        if not any(k in p for k in _DAY_KEYS):
            return 1
        months = n("BYMONTH") if "BYMONTH" in p else 12
        tokens = [_NTH.match(t) for t in p.get("BYDAY", "").split(",")] if "BYDAY" in p else []
        nth = sum(1 for t in tokens if t is not None and t.group(1))
        plain = len({t.group(2) for t in tokens if t is not None and not t.group(1)})
        if self.freq == "WEEKLY":
            return min(7, plain + nth) if "BYDAY" in p else 7
        bounds = [366 if self.freq == "YEARLY" else 31]
        if "BYYEARDAY" in p:
            bounds.append(n("BYYEARDAY"))
        if "BYMONTHDAY" in p:
            bounds.append(n("BYMONTHDAY") * (months if self.freq == "YEARLY" else 1))
        if "BYWEEKNO" in p:
            bounds.append(7 * n("BYWEEKNO"))
        if "BYDAY" in p and len(tokens) == n("BYDAY") and all(t is not None for t in tokens):
            if self.freq == "MONTHLY":
                bounds.append(nth + 5 * plain)
            elif "BYMONTH" in p:
                bounds.append((nth + 5 * plain) * months)
            else:
                bounds.append(nth + 53 * plain)
        return max(1, min(bounds))

    def _rule_near(self, after: datetime) -> du.rrule:
        """The same rule anchored a whole number of periods later (for FREQ=MONTHLY and YEARLY, whole
        400-year cycles, after which the calendar repeats), so dateutil need not walk from the start."""
        period = _PERIOD.get(self.freq)
        if period is None:
            cycles = (after.year - self._anchor.year - 1) // 400
            cycle = 400 if self.freq == "YEARLY" else 4800  # years or months
            if cycles < 1 or cycle % self.interval:
                return self._base
            anchor = self._anchor.replace(year=self._anchor.year + 400 * cycles)
        else:
            if after - self._anchor <= 4 * period * self.interval:
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
        after = max(after, self._anchor - timedelta(microseconds=1))
        occurrences = iter(rule)  # from the rule's anchor; each step may walk at most the horizon
        while (candidate := _next_within(occurrences, self._budget)) is not None:
            if candidate > after:
                yield candidate

    # ---------------------------------------------------------------- friendlier constructors

    @classmethod
    def _build(cls, parts: list[str], *, at: str | time, tz: str | ZoneInfo | None, start: datetime | None,
               count: int | None, until: datetime | None, every: int) -> RRule:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidJobOptions(f"every must be a positive integer, got {every!r}")
        clock = parse_time(at)
        if every > 1:
            parts.append(f"INTERVAL={every}")
        parts += [f"BYHOUR={clock.hour}", f"BYMINUTE={clock.minute}", f"BYSECOND={clock.second}"]
        if count is not None:
            parts.append(f"COUNT={count}")
        if until is not None:
            checked = aware("until", until)
            assert checked is not None
            parts.append(f"UNTIL={_utc_stamp(checked)}")
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
            raise InvalidJobOptions("weekly needs at least one day")
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
            raise InvalidJobOptions(f"month must be 1 to 12, got {month!r}")
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
        raise InvalidJobOptions("give either day= (of the month) or weekday= (with nth=)")
    if day is not None:
        if isinstance(day, bool) or not isinstance(day, int) or not (1 <= day <= 31 or -31 <= day <= -1):
            raise InvalidJobOptions(f"day must be 1 to 31, or -1 (the last) to -31, got {day!r}")
        return f"BYMONTHDAY={day}"
    if isinstance(nth, bool) or not isinstance(nth, int) or nth == 0 or not -5 <= nth <= 5:
        raise InvalidJobOptions(f"nth must be 1 to 5, or -1 (the last) to -5, got {nth!r}")
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
