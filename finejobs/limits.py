"""The documented limits of finejobs, and the checks and caps that enforce them. Pure code: no I/O.

Every entry point (Python API, CLI, later the web and REST surfaces) refuses input outside these limits
with a named finejobs error before anything is written, and everything finejobs stores or logs from
untrusted sources (handler errors, payloads) is capped here. docs/guarantees.md lists the same numbers.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from finejobs.errors import InvalidJobOptions

# Times: what both PostgreSQL and Python can represent after conversion to UTC *and back to any local
# time zone* (a value a day from Python's ends would overflow when loaded in a far time zone).
MIN_TIME = datetime(1, 1, 3, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 29, tzinfo=UTC)
# Durations given as options (expires_in, timeouts, schedule intervals ...): at most 100 years.
MAX_DURATION = timedelta(days=36_525)
# Snooze delays and retry backoffs are clamped to this (a job can always be brought back sooner by hand).
MAX_DELAY = timedelta(days=365)

MAX_PAYLOAD_DEPTH = 64  # nesting of objects and arrays in a payload
MAX_PAYLOAD_BYTES = 1_000_000  # the default of Queue(max_payload_bytes=)
MAX_RETURN_VALUE_BYTES = 1_000_000  # a handler's return value larger than this (as JSON) is not kept
MAX_UNIQUE_KEY_BYTES = 1_024  # UTF-8 bytes; the unique index cannot hold much more
DEFAULT_SCHEDULE_BATCH = 2_000  # due schedules the scheduler turns into jobs per statement (Worker(schedule_batch=))
MAX_SCHEDULE_BATCH = 100_000  # ... at most: the rows of a batch stay locked until it commits
MAX_ATTEMPTS = 10_000  # max_attempts of a kind or a schedule (1 ..)
MAX_MESSAGE_CHARS = 8_192  # an attempt's error message, a Cancel reason, an operator's reason
MAX_TRACEBACK_CHARS = 32_768  # an attempt's traceback
MAX_LOG_VALUE_CHARS = 2_000  # one value taken from an error or a payload into a log line
MAX_RRULE_COUNT = 100_000  # an RRULE's COUNT (finejobs._wallclock keeps it exact up to this)
MAX_MISFIRE_LIMIT = 10_000  # ticks one catch-up of a schedule may make
RULE_HORIZON_YEARS = 400  # how far ahead a rule's next time is looked for (none within: it never fires)

# A worker's options (the Worker's Python API and `finejobs worker` alike).
MAX_CONCURRENCY = 10_000
MAX_POOL_SIZE = 1_000
MAX_WORKER_POLL = timedelta(hours=1)  # poll_interval, and the other intervals of a worker's services
MAX_WORKER_GRACE = timedelta(days=1)  # shutdown_grace
MAX_WORKER_LEASE = timedelta(days=1)  # lease
MIN_CLI_LEASE = timedelta(seconds=0.5)  # `finejobs worker --lease` (the Python API takes any positive lease)


def check_time(name: str, value: datetime | None) -> datetime | None:
    """``value`` unchanged if it is an aware datetime within [MIN_TIME, MAX_TIME]; else InvalidJobOptions."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidJobOptions(f"{name} must be a datetime, got {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except Exception as exc:  # a broken tzinfo
        raise InvalidJobOptions(f"{name}: its time zone failed: {type(exc).__name__}") from None
    if offset is None:
        raise InvalidJobOptions(
            f"{name} is a naive datetime ({value.isoformat()}): pass a timezone-aware one, "
            "e.g. datetime.now(timezone.utc)"
        )
    try:
        in_range = MIN_TIME <= value <= MAX_TIME
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidJobOptions(f"{name} ({value.isoformat()}) is outside the supported range "
                                f"{MIN_TIME.date()} .. {MAX_TIME.date()} (UTC)")
    return value


def add_time(name: str, start: datetime, delta: timedelta) -> datetime:
    """``start + delta``, refused with InvalidJobOptions (naming ``name``) if it leaves the time range."""
    try:
        end = start + delta
    except OverflowError:
        raise InvalidJobOptions(f"{name} ({delta}) reaches past the supported time range "
                                f"(up to {MAX_TIME.date()})") from None
    if not MIN_TIME <= end <= MAX_TIME:
        raise InvalidJobOptions(f"{name} ({delta}) reaches past the supported time range "
                                f"{MIN_TIME.date()} .. {MAX_TIME.date()}")
    return end


def clamp_after(start: datetime, delta: timedelta, *, most: timedelta = MAX_DELAY) -> datetime:
    """``start + delta`` with ``delta`` clamped to ``[0, most]``, and never past MAX_TIME; never raises."""
    if delta > most:
        delta = most
    if delta < timedelta(0):
        delta = timedelta(0)
    try:
        return min(start + delta, MAX_TIME)
    except OverflowError:
        return MAX_TIME


def check_duration(name: str, value: timedelta | float | int | None, *, minimum: timedelta = timedelta(0),
                   strict: bool = True, most: timedelta = MAX_DURATION) -> timedelta | None:
    """A duration option as a timedelta within (minimum, most]; seconds are accepted as a number.

    ``strict`` refuses ``minimum`` itself (durations must be positive by default).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise InvalidJobOptions(f"{name} must be a timedelta (or seconds), got {type(value).__name__}")
    if not isinstance(value, timedelta):
        if not math.isfinite(value) or abs(value) > most.total_seconds():
            raise InvalidJobOptions(f"{name} ({value!r} s) is over the limit of {_words(most)}")
        value = timedelta(seconds=value)
    if value > most:
        raise InvalidJobOptions(f"{name} ({value}) is over the limit of {_words(most)}")
    if value < minimum or (strict and value == minimum):
        bound = "at least" if not strict else "more than"
        raise InvalidJobOptions(f"{name} ({value}) must be {bound} {minimum}")
    return value


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer option within [low, high] (``True`` is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobOptions(f"{name} must be an integer within {low}..{high}, got {value!r}"[:300])
    if not low <= value <= high:
        raise InvalidJobOptions(f"{name} must be an integer within {low}..{high}, got {value}"[:300])
    return value


def check_text(name: str, value: Any, *, max_bytes: int | None = None, max_chars: int | None = None,
               empty: bool = False) -> str:
    """A text option: a str without NUL characters or lone surrogates, within the limits given."""
    if not isinstance(value, str):
        raise InvalidJobOptions(f"{name} must be a string, got {type(value).__name__}")
    if not value and not empty:
        raise InvalidJobOptions(f"{name} must not be empty")
    if "\x00" in value:
        raise InvalidJobOptions(f"{name} must not contain NUL characters (\\x00)")
    if not is_utf8(value):
        raise InvalidJobOptions(f"{name} contains a lone surrogate (not valid Unicode text)")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidJobOptions(f"{name} has {len(value)} characters, over the limit of {max_chars}")
    if max_bytes is not None:
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            raise InvalidJobOptions(f"{name} is {size} bytes (UTF-8), over the limit of {max_bytes}")
    return value


def is_utf8(text: str) -> bool:
    """False if ``text`` holds a lone surrogate (such a str cannot be encoded, stored or sent)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL written as ``\\x00``, lone surrogates as ``\\udXXX``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not is_utf8(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def cap(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """``text`` cut to at most ``limit`` characters, marked ``[... N characters cut]`` where cut.

    ``keep_tail`` keeps the start and the end (a traceback's last frames matter most)."""
    if len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit:,} characters cut]\n"
    room = max(0, limit - len(marker))
    if keep_tail:
        head = room // 4
        return text[:head] + marker + text[len(text) - (room - head):]
    return text[:room] + marker.rstrip("\n")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def log_safe(value: object, limit: int = MAX_LOG_VALUE_CHARS) -> str:
    """One value for a log line: control characters (newlines, ANSI escapes, ...) escaped, so that a
    handler's error or a payload cannot forge log lines or drive a terminal, and capped to ``limit``."""
    try:
        text = value if isinstance(value, str) else str(value)
    except BaseException:  # a __str__ that raises (even SystemExit) must not take a log line down
        text = f"<{type(value).__qualname__} could not be rendered>"
    if len(text) > limit:
        text = text[:limit] + f"[... {len(text) - limit:,} characters cut]"
    text = storable_text(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _words(value: timedelta) -> str:
    days = value.days
    if days >= 365 and days % 365 == 0:
        return f"{days // 365} years" if days > 365 else "1 year"
    if days:
        return f"{days:,} days" if days > 1 else "1 day"
    return f"{value.total_seconds():g} s"
