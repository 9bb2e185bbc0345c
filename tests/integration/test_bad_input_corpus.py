"""A table of bad input (payloads, names, times, options, URLs, CLI arguments): each entry is refused with a
named finejobs error whose message names the field, and writes nothing in any finejobs table.

The Python entries call the public API on a real PostgreSQL. The CLI entries run the CLI's entry point
(``finejobs.cli.main``) in-process, for speed (tests/acceptance runs such commands in a subprocess), and
check the exit status and the one-line error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pydantic
import pytest

import finejobs
from finejobs import (
    Cron,
    DailyAt,
    Every,
    FinejobsError,
    InvalidJobOptions,
    JobSpec,
    Once,
    PayloadError,
    Queue,
    Retry,
    RRule,
    UnknownKindError,
)
from finejobs.cli import main
from finejobs.store import libpq_url

NY = ZoneInfo("America/New_York")
MAX_NY = datetime.max.replace(tzinfo=NY)
MIN_PLUS5 = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
LATE = datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-5)))
NAIVE = datetime(2026, 11, 22, 8)
SOON = datetime(2026, 11, 22, 9, tzinfo=UTC)


class Address(pydantic.BaseModel):
    district: int
    street: str = ""


class Alert(pydantic.BaseModel):
    patient_id: int
    dose: str
    address: Address | None = None


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"n": value}
    return value


def deep_list(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture
def corpus_queue(queue: Queue) -> Queue:
    @queue.job("alert")
    def alert(payload: Alert) -> None:
        pass

    @queue.job("free")
    def free(payload: dict[str, Any]) -> None:
        pass

    return queue


Entry = tuple[str, Callable[[Queue], Any], type[BaseException], str]
E: list[Entry] = []


def entry(name: str, call: Callable[[Queue], Any], error: type[BaseException], field: str) -> None:
    E.append((name, call, error, field))


def enq(payload: Any, kind: str = "free", **options: Any) -> Callable[[Queue], Any]:
    return lambda q: q.enqueue(kind, payload, **options)


# ---------------------------------------------------------------- payloads (untyped kind)
for label, payload, field in [
    ("not a mapping: list", [1, 2], "payload"),
    ("not a mapping: str", "text", "payload"),
    ("not a mapping: int", 5, "payload"),
    ("not a mapping: None", None, "payload"),
    ("NUL in a value", {"a": "x\x00y"}, "a"),
    ("NUL in a nested value", {"a": {"b": ["ok", "\x00"]}}, "a.b.1"),
    ("NUL in a key", {"a\x00": 1}, "a"),
    ("lone surrogate in a value", {"a": "bad \ud800"}, "a"),
    ("lone low surrogate", {"a": "\udfff"}, "a"),
    ("lone surrogate nested", {"a": [{"b": "\ud83d"}]}, "a.0.b"),
    ("lone surrogate in a key", {"k\ud800": 1}, "k"),
    ("NaN", {"a": float("nan")}, "a"),
    ("infinity", {"a": float("inf")}, "a"),
    ("minus infinity", {"a": [float("-inf")]}, "a.0"),
    ("negative zero", {"a": -0.0}, "a"),
    ("negative zero nested", {"a": {"b": [1.0, -0.0]}}, "a.b.1"),
    ("int key", {1: "x"}, "1"),
    ("tuple key", {(1, 2): "x"}, "(1, 2)"),
    ("bytes value", {"a": b"\xff\xfe"}, "a"),
    ("bytes valid utf-8", {"a": b"abc"}, "a"),
    ("set value", {"a": {1, 2}}, "a"),
    ("object value", {"a": object()}, "a"),
    ("datetime value", {"a": SOON}, "a"),
    ("complex value", {"a": 1j}, "a"),
    ("nested 65 objects", deep(65), "n.n.n"),
    ("nested 200 objects", deep(200), "n.n.n"),
    ("nested 5000 objects", deep(5000), "n.n.n"),
    ("nested 100 lists", {"a": deep_list(100)}, "a.0.0"),
    ("over 1 MB", {"a": "x" * 1_000_001}, "payload"),
    ("over 1 MB of many keys", {str(i): "y" * 100 for i in range(12_000)}, "payload"),
    ("huge int", {"a": 10**5000}, "payload"),
]:
    entry(f"payload: {label}", enq(payload), PayloadError, field)

# ---------------------------------------------------------------- payloads (typed kind)
for label, payload, field in [
    ("missing fields", {}, "patient_id"),
    ("missing dose", {"patient_id": 1}, "dose"),
    ("wrong type", {"patient_id": "x", "dose": "08:00"}, "patient_id"),
    ("wrong types, both", {"patient_id": "x", "dose": 5}, "dose"),
    ("unknown field", {"patient_id": 1, "dose": "a", "extra": 1}, "extra"),
    ("unknown nested field", {"patient_id": 1, "dose": "a", "address": {"district": 1, "zip": 2}}, "address.zip"),
    ("wrong nested type", {"patient_id": 1, "dose": "a", "address": {"district": "x"}}, "address.district"),
    ("nested not an object", {"patient_id": 1, "dose": "a", "address": [1]}, "address"),
    ("lone surrogate in a typed str", {"patient_id": 1, "dose": "\ud800"}, "dose"),
    ("NUL in a typed str", {"patient_id": 1, "dose": "a\x00"}, "dose"),
    ("model_construct with wrong types", Alert.model_construct(patient_id="x", dose=5), "patient_id"),
    ("model_construct missing a field", Alert.model_construct(patient_id=1), "dose"),
    ("model_construct with a bad nested model",
     Alert.model_construct(patient_id=1, dose="a", address=Address.model_construct(district="x")), "address"),
    ("another model", Address(district=1), "patient_id"),
    ("a list", [1], "payload"),
    ("None", None, "payload"),
    ("a float for an int", {"patient_id": 1.5, "dose": "a"}, "patient_id"),
    ("bool for a str", {"patient_id": 1, "dose": True}, "dose"),
]:
    entry(f"typed payload: {label}", enq(payload, "alert"), PayloadError, field)

# ---------------------------------------------------------------- kinds and names
entry("unknown kind", enq({}, "nope"), UnknownKindError, "nope")
entry("unknown kind, empty", enq({}, ""), UnknownKindError, "''")
entry("unknown kind with NUL", enq({}, "a\x00"), UnknownKindError, "unknown job kind")
for label, name, field in [
    ("empty", "", "job kind name"),
    ("201 characters", "k" * 201, "job kind name"),
    ("NUL", "a\x00b", "job kind name"),
    ("lone surrogate", "k\ud800", "job kind name"),
    ("not a str", 5, "job kind name"),
]:
    entry(f"kind declaration: {label}", lambda q, n=name: q.job(n)(lambda p: None), InvalidJobOptions, field)
entry("kind declared twice", lambda q: q.job("free")(lambda p: None), InvalidJobOptions, "free")
entry("kind: shard and shard_by", lambda q: q.job("x", shard="a", shard_by="d")(lambda p: None),
      InvalidJobOptions, "shard")
entry("kind: handler without a parameter", lambda q: q.job("x")(lambda: None), InvalidJobOptions, "parameter")

# ---------------------------------------------------------------- shards
for label, shard in [
    ("upper case", "District-3"), ("empty", ""), ("space", "a b"), ("SQL", "x'; DROP TABLE finejobs_jobs;--"),
    ("64 characters", "a" * 64), ("leading dash", "-a"), ("slash", "a/b"), ("NUL", "a\x00"),
    ("unicode", "distrito-ñ"), ("glob", "district-*"),
]:
    entry(f"shard: {label}", enq({}, shard=shard), InvalidJobOptions, "shard")
entry("shard: not a str", enq({}, shard=3), InvalidJobOptions, "shard")
entry("shard_by: field missing", lambda q: q.job("routed", shard_by="district")(lambda p: None)
      and q.enqueue("routed", {}), FinejobsError, "district")

# ---------------------------------------------------------------- times
for name in ("run_at", "expires_at"):
    for label, value in [
        ("naive", NAIVE), ("datetime.max in New York", MAX_NY), ("year 1 at +05:00", MIN_PLUS5),
        ("9999-12-31 at -05:00", LATE), ("datetime.min UTC", datetime.min.replace(tzinfo=UTC)),
        ("datetime.max UTC", datetime.max.replace(tzinfo=UTC)), ("a date", SOON.date()), ("a string", "2026-11-22"),
        ("a timestamp number", 1_700_000_000),
    ]:
        entry(f"{name}: {label}", enq({}, **{name: value}), InvalidJobOptions, name)
entry("expires_at before run_at", enq({}, run_at=SOON, expires_at=SOON - timedelta(1)), InvalidJobOptions,
      "expires_at")
entry("expires_at equal to run_at", enq({}, run_at=SOON, expires_at=SOON), InvalidJobOptions, "expires_at")
entry("expires_in that overflows at enqueue",
      lambda q: q.job("long", expires_in=timedelta(days=36_000))(lambda p: None)
      and q.enqueue("long", {}, run_at=datetime(9950, 1, 1, tzinfo=UTC)), InvalidJobOptions, "expires_in")

# ---------------------------------------------------------------- options
for label, value in [("True", True), ("False", False), ("too high", 32768), ("too low", -32769), ("a float", 1.5),
                     ("a str", "1"), ("huge", 10**30)]:
    entry(f"priority: {label}", enq({}, priority=value), InvalidJobOptions, "priority")
    entry(f"kind priority: {label}", lambda q, v=value: q.job("p", priority=v)(lambda p: None),
          InvalidJobOptions, "priority")
for label, value in [("empty", ""), ("NUL", "a\x00b"), ("1025 bytes", "k" * 1025), ("600 two-byte chars", "é" * 600),
                     ("lone surrogate", "\ud800"), ("an int", 5), ("bytes", b"k")]:
    entry(f"unique_key: {label}", enq({}, unique_key=value), InvalidJobOptions, "unique_key")
for label, kwargs, field in [
    ("max_attempts 0", {"max_attempts": 0}, "max_attempts"),
    ("max_attempts negative", {"max_attempts": -1}, "max_attempts"),
    ("max_attempts True", {"max_attempts": True}, "max_attempts"),
    ("max_attempts too large for the column", {"max_attempts": 2**31}, "max_attempts"),
    ("max_attempts a float", {"max_attempts": 3.0}, "max_attempts"),
    ("backoff negative", {"backoff": timedelta(-1)}, "backoff"),
    ("backoff a number", {"backoff": 10}, "backoff"),
    ("max_backoff below backoff", {"backoff": timedelta(hours=1), "max_backoff": timedelta(1) / 48}, "max_backoff"),
    ("jitter negative", {"jitter": timedelta(seconds=-1)}, "jitter"),
]:
    entry(f"Retry: {label}", lambda q, k=kwargs: Retry(**k), InvalidJobOptions, field)
for label, kwargs, field in [
    ("expires_in zero", {"expires_in": timedelta(0)}, "expires_in"),
    ("expires_in negative", {"expires_in": timedelta(-1)}, "expires_in"),
    ("expires_in timedelta.max", {"expires_in": timedelta.max}, "expires_in"),
    ("expires_in a str", {"expires_in": "1h"}, "expires_in"),
    ("timeout zero", {"timeout": timedelta(0)}, "timeout"),
    ("timeout 1e300 seconds", {"timeout": 1e300}, "timeout"),
    ("timeout nan", {"timeout": float("nan")}, "timeout"),
]:
    entry(f"kind: {label}", lambda q, k=kwargs: q.job("opt", **k)(lambda p: None), InvalidJobOptions, field)
entry("enqueue_many: one bad item refuses all", lambda q: q.enqueue_many("free", [{}, {"a": "\x00"}, {}]),
      PayloadError, "a")
entry("enqueue_many: one bad JobSpec option",
      lambda q: q.enqueue_many("free", [JobSpec({}), JobSpec({}, priority=True)]), InvalidJobOptions, "priority")
entry("enqueue_many: one bad time", lambda q: q.enqueue_many("free", [JobSpec({}, run_at=MAX_NY)]),
      InvalidJobOptions, "run_at")

# ---------------------------------------------------------------- operations
entry("cancel: NUL in the reason", lambda q: q.cancel(1, reason="a\x00b"), InvalidJobOptions, "reason")
entry("cancel: a 10 kB reason", lambda q: q.cancel(1, reason="r" * 10_000), InvalidJobOptions, "reason")
entry("cancel: lone surrogate in the reason", lambda q: q.cancel(1, reason="\ud800"), InvalidJobOptions, "reason")

# ---------------------------------------------------------------- URLs and configuration
for label, url in [
    ("not postgres", "mysql://u:secret@h/db"), ("empty", ""), ("bad port", "postgresql://u:secret@h:99999999/db"),
    ("garbage", "::::"),
]:
    entry(f"URL: {label}", lambda q, u=url: Queue(u).store, finejobs.ConfigurationError, "URL")
entry("Queue: url and shard_map", lambda q: Queue("postgresql://h/db", shard_map=finejobs.ShardMap.single("postgresql://h/db")),
      finejobs.ConfigurationError, "shard_map")

# ---------------------------------------------------------------- schedules (Python API)
for label, call, field in [
    ("empty name", lambda q: q.schedules.add("", "free", Every(timedelta(hours=1))), "name"),
    ("blank name", lambda q: q.schedules.add("   ", "free", Every(timedelta(hours=1))), "name"),
    ("NUL in name", lambda q: q.schedules.add("a\x00", "free", Every(timedelta(hours=1))), "name"),
    ("max_attempts 0", lambda q: q.schedules.add("s", "free", Every(timedelta(hours=1)), max_attempts=0),
     "max_attempts"),
    ("max_attempts huge", lambda q: q.schedules.add("s", "free", Every(timedelta(hours=1)), max_attempts=2**40),
     "max_attempts"),
    ("start datetime.max in New York",
     lambda q: q.schedules.add("s", "free", Every(timedelta(hours=1)), start=MAX_NY), "start"),
    ("end in year 1", lambda q: q.schedules.add("s", "free", Every(timedelta(hours=1)), end=MIN_PLUS5), "end"),
    ("Once at datetime.max in New York", lambda q: q.schedules.add("s", "free", Once(MAX_NY)), "Once"),
    ("payload NUL", lambda q: q.schedules.add("s", "free", Every(timedelta(hours=1)), payload={"a": "\x00"}), "a"),
    ("payload over 1 MB",
     lambda q: q.schedules.add("s", "free", Every(timedelta(hours=1)), payload={"a": "x" * 1_000_001}), "payload"),
    ("payload of the wrong model", lambda q: q.schedules.add("s", "alert", Every(timedelta(hours=1)),
                                                             payload={"patient_id": "x"}), "patient_id"),
    ("cron that never fires", lambda q: q.schedules.add("s", "free", Cron("0 0 30 2 *")), "never"),
    ("rrule that never fires",
     lambda q: q.schedules.add("s", "free", RRule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30")), "never"),
    ("interval of timedelta.max", lambda q: q.schedules.add("s", "free", Every(timedelta.max)), "every"),
    ("daily-at a bad time zone", lambda q: q.schedules.add("s", "free", DailyAt("06:00", tz="Mars/Olympus")), "tz"),
]:
    entry(f"schedule: {label}", call, FinejobsError, field)


# ---------------------------------------------------------------- the checks


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Row counts of every finejobs table (partitions included), and the relations that exist."""
    tables = [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname LIKE 'finejobs%%' AND c.relkind IN ('r', 'p') AND n.nspname = current_schema() "
        "ORDER BY 1")]
    counts = {}
    for table in tables:
        row = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))).fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


@pytest.fixture
def raw(clean_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        yield conn


def test_the_corpus_is_large() -> None:
    assert len(E) + len(CLI) >= 150, len(E) + len(CLI)
    assert len({name for name, *_ in E}) == len(E), "entry names are unique"


@pytest.mark.parametrize(("name", "call", "error", "field"), E, ids=[e[0] for e in E])
def test_bad_python_input_is_refused_and_writes_nothing(corpus_queue: Queue, raw: psycopg.Connection[Any],
                                                        name: str, call: Callable[[Queue], Any],
                                                        error: type[BaseException], field: str) -> None:
    before = snapshot(raw)
    with pytest.raises(error) as refused:
        call(corpus_queue)
    assert isinstance(refused.value, FinejobsError), f"{type(refused.value).__name__} is not a finejobs error"
    message = str(refused.value)
    assert field in message, f"the message names {field!r}: {message[:300]}"
    assert len(message) < 5_000, "a refusal's message stays short"
    if isinstance(refused.value, PayloadError):
        assert refused.value.fields, "PayloadError.fields names the bad fields"
    assert snapshot(raw) == before, "nothing was written"


# ---------------------------------------------------------------- CLI arguments

CLI: list[tuple[str, list[str], str]] = [
    # (name, arguments, text the one-line error must contain)
    ("worker --lease 1e12", ["worker", "--app", "tests.acceptance.app_jobs:queue", "--lease", "1e12"], "lease"),
    ("worker --poll-interval 1e300",
     ["worker", "--app", "tests.acceptance.app_jobs:queue", "--poll-interval", "1e300"], "poll-interval"),
    ("worker --poll-interval nan", ["worker", "--app", "tests.acceptance.app_jobs:queue", "--poll-interval", "nan"],
     "poll-interval"),
    ("worker --shutdown-grace inf",
     ["worker", "--app", "tests.acceptance.app_jobs:queue", "--shutdown-grace", "inf"], "shutdown-grace"),
    ("worker --concurrency 0", ["worker", "--app", "tests.acceptance.app_jobs:queue", "--concurrency", "0"],
     "concurrency"),
    ("worker --shard upper case", ["worker", "--app", "tests.acceptance.app_jobs:queue", "--shard", "BAD"], "shard"),
    ("worker --app of a missing module", ["worker", "--app", "no_such_module_x:queue"], "no_such_module_x"),
    ("enqueue --run-at year 9999 at -05:00",
     ["enqueue", "k", "--run-at", "9999-12-31T23:00:00-05:00"], "run-at"),
    ("enqueue --run-at year 1 at +05:00", ["enqueue", "k", "--run-at", "0001-01-01T01:00:00+05:00"], "run-at"),
    ("enqueue --expires-at naive", ["enqueue", "k", "--expires-at", "2026-11-22T08:00:00"], "expires-at"),
    ("enqueue --run-at garbage", ["enqueue", "k", "--run-at", "tomorrow"], "run-at"),
    ("enqueue --priority 40000", ["enqueue", "k", "--priority", "40000"], "priority"),
    ("enqueue --max-attempts 0", ["enqueue", "k", "--max-attempts", "0"], "max-attempts"),
    ("enqueue --max-attempts huge", ["enqueue", "k", "--max-attempts", "99999999999"], "max-attempts"),
    ("enqueue --unique-key too long", ["enqueue", "k", "--unique-key", "u" * 2000], "unique_key"),
    ("enqueue --payload not JSON", ["enqueue", "k", "--payload", "{oops"], "payload"),
    ("enqueue --payload a list", ["enqueue", "k", "--payload", "[1]"], "payload"),
    ("enqueue --payload lone surrogate", ["enqueue", "k", "--payload", '{"a": "\\ud800"}'], "a"),
    ("enqueue --payload NUL", ["enqueue", "k", "--payload", '{"a": "\\u0000"}'], "a"),
    ("enqueue --payload nested 100", ["enqueue", "k", "--payload", '{"a":' * 100 + "1" + "}" * 100], "nested"),
    ("enqueue --payload NaN", ["enqueue", "k", "--payload", '{"a": NaN}'], "a"),
    ("enqueue --shard bad", ["enqueue", "k", "--shard", "Bad Shard"], "shard"),
    ("jobs show id over bigint", ["jobs", "show", "99999999999999999999999"], "ID"),
    ("jobs show negative id", ["jobs", "show", "--", "-5"], "ID"),
    ("jobs list --kind with NUL", ["jobs", "list", "--kind", "a\x00b"], "kind"),
    ("jobs list --shard with NUL", ["jobs", "list", "--shard", "a\x00b"], "shard"),
    ("jobs list --state unknown", ["jobs", "list", "--state", "lost"], "state"),
    ("jobs list --limit 0", ["jobs", "list", "--limit", "0"], "limit"),
    ("jobs cancel --reason with NUL", ["jobs", "cancel", "1", "--reason", "a\x00b"], "reason"),
    ("schedules add empty name", ["schedules", "add", "", "--kind", "k", "--every", "1h"], "name"),
    ("schedules add --every overflow", ["schedules", "add", "s", "--kind", "k", "--every", "99999999999999999999d"],
     "every"),
    ("schedules add --max-attempts 0", ["schedules", "add", "s", "--kind", "k", "--every", "1h", "--max-attempts", "0"],
     "max-attempts"),
    ("schedules add --cron never", ["schedules", "add", "s", "--kind", "k", "--cron", "0 0 30 2 *"], "never"),
    ("schedules add --start year 9999",
     ["schedules", "add", "s", "--kind", "k", "--every", "1h", "--start", "9999-12-31T23:00:00-05:00"], "start"),
    ("schedules add --until year 1",
     ["schedules", "add", "s", "--kind", "k", "--every", "1h", "--until", "0001-01-01T01:00:00+05:00"], "until"),
    ("shards add other", ["shards", "add", "other"], "other"),
    ("shards add bad name", ["shards", "add", "Bad"], "shard"),
    ("shards drop bad name", ["shards", "drop", "a b"], "shard"),
    ("--database-url not postgres", ["--database-url", "mysql://u:pw@h/db", "stats"], "URL"),
]


@pytest.mark.parametrize(("name", "args", "needle"), CLI, ids=[c[0] for c in CLI])
def test_bad_cli_input_is_one_line_and_writes_nothing(clean_db: str, raw: psycopg.Connection[Any], name: str,
                                                      args: list[str], needle: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(raw)
    monkeypatch.setenv("FINEJOBS_DATABASE_URL", clean_db)
    monkeypatch.delenv("FINEJOBS_DEBUG", raising=False)
    monkeypatch.delenv("FINEJOBS_APP", raising=False)
    code = main(args)
    out, err = capsys.readouterr()
    assert code in (1, 2), f"exit {code}: {out} {err}"
    assert "Traceback" not in err and "unexpected" not in err.lower(), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finejobs: error: "), f"one error line: {err}"
    assert needle.lower() in err.lower(), f"names {needle!r}: {err}"
    assert snapshot(raw) == before, "nothing was written"
