"""Acceptance: ``finejobs schedules add/update`` refuses input outside the documented limits, through the real
CLI in a subprocess: one line ``finejobs: error: ...`` naming the option, exit status 2 (usage) or 1, never
a traceback or an "unexpected" error, and nothing written."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .helpers import Db, run_cli

EVERY = ["--kind", "k", "--every", "5m"]


@pytest.fixture(autouse=True)
def no_schedules(jobdb: Db) -> Iterator[None]:
    jobdb.conn.execute("TRUNCATE finejobs_schedules RESTART IDENTITY")
    yield
    jobdb.conn.execute("TRUNCATE finejobs_schedules RESTART IDENTITY")


REFUSED = [
    # (arguments after "schedules add", exit status, what the one line must say)
    (["", *EVERY], 2, "'NAME': name must not be empty"),
    (["   ", *EVERY], 2, "'NAME': name must not be blank"),
    (["s", "--kind", "k", "--every", "5m", "--max-attempts", "0"], 2, "'--max-attempts': 0 is not in the range"),
    (["s", "--kind", "k", "--every", "5m", "--max-attempts", "10001"], 2, "'--max-attempts'"),
    (["s", "--kind", "k", "--every", "99999999999999999999d"], 2, "'--every': Every: the interval is over the limit"),
    (["s", "--kind", "k", "--every", "9" * 400 + "s"], 2, "'--every'"),
    (["s", "--kind", "k", "--every", "36526d"], 2, "'--every': Every: the interval (every 36526 days, 0:00:00)"),
    (["s", "--kind", "k", "--every", "101y"], 2, "'--every': Every: the interval (every 1212 months) is over"),
    (["s", *EVERY, "--misfire-grace", "99999999999999999999d"], 2, "'--misfire-grace'"),
    (["s", *EVERY, "--expires-in", "40000d"], 2, "'--expires-in': expires_in"),
    (["s", *EVERY, "--misfire-limit", "0"], 2, "'--misfire-limit'"),
    (["s", "--kind", "k", "--adaptive", "success=99999999999999999999d"], 2, "'--adaptive'"),
    (["s", *EVERY, "--start", "9999-12-31T23:00:00-05:00"], 2, "'--start': start (9999-12-31T23:00:00-05:00) is "
                                                              "outside the supported range"),
    (["s", *EVERY, "--until", "9999-12-31T23:59:59.999999-05:00"], 2, "'--until': until"),
    (["s", *EVERY, "--start", "0001-01-01T01:00:00+05:00"], 2, "'--start': start"),
    (["s", "--kind", "k", "--once", "0001-01-01T01:00:00+05:00"], 2, "'--once'"),
    (["s", "--kind", "k", "--once", "9999-12-31T23:00:00-05:00"], 2, "'--once'"),
    (["s", "--kind", "k", "--cron", "0 6 * * *", "--until", "9999-12-31T23:00:00-05:00"], 2, "'--until'"),
    (["s", "--kind", "k", "--rrule", "FREQ=DAILY;UNTIL=99991231"], 2, "'--rrule': UNTIL"),
    (["s", "--kind", "k", "--cron", "0 0 30 2 *"], 2, "'--cron'"),
    (["s", "--kind", "k", "--cron", "0 0 L-30 2 *"], 2, "'--cron': cron expression '0 0 L-30 2 *' never fires"),
    (["s", "--kind", "k", "--rrule", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"], 2, "never fires"),
    (["s", "--kind", "k", "--rrule", "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30"], 2, "never fires"),
    (["s", "--kind", "k", "--rrule", "FREQ=SECONDLY", "--count", "100001"], 2, "over the limit of 100,000"),
    (["s", "--kind", "k", "--every", "1h", "--start", "2026-01-01T00:00:00Z", "--until", "2025-01-01T00:00:00Z"], 2,
     "'--every': Every: until (2025-01-01T00:00:00+00:00) is before start"),
    (["s", *EVERY, "--payload", '{"a": "\\u0000"}'], 1, "NUL characters"),
    (["s", *EVERY, "--payload", '{"a": "\\ud800"}'], 1, "lone surrogate"),
    (["s", *EVERY, "--payload", '{"a": NaN}'], 1, "a: nan cannot be stored"),
    (["s", *EVERY, "--payload", "[" * 50_000], 2, "'--payload': the JSON is nested too deep"),
    (["s", *EVERY, "--payload", '{"a":' * 70 + "1" + "}" * 70], 1, "nested deeper than 64 levels"),
]


@pytest.mark.parametrize(("args", "code", "fragment"), REFUSED, ids=[" ".join(a)[:60] for a, _, _ in REFUSED])
def test_schedules_add_refuses_out_of_limit_input(clean_db: str, jobdb: Db, args: list[str], code: int,
                                                  fragment: str) -> None:
    began = time.monotonic()
    result = run_cli("schedules", "add", *args, url=clean_db)
    assert time.monotonic() - began < 10, "a refusal must not burn CPU"
    assert result.code == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finejobs: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert jobdb.conn.execute("SELECT count(*) FROM finejobs_schedules").fetchone() == (0,)


def test_schedules_update_refuses_out_of_limit_input(clean_db: str, jobdb: Db) -> None:
    run_cli("schedules", "add", "s", *EVERY, "--max-attempts", "5", url=clean_db).ok()
    for args, fragment in [
        (["--max-attempts", "0"], "'--max-attempts'"),
        (["--expires-in", "99999999999999999999d"], "'--expires-in'"),
        (["--every", "1h", "--start", "9999-12-31T23:00:00-05:00"], "'--start'"),
        (["--rrule", "FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31"], "never fires"),
    ]:
        result = run_cli("schedules", "update", "s", *args, url=clean_db)
        assert result.code == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("finejobs: error: ") and fragment in lines[0], result.stderr
    shown = run_cli("schedules", "show", "s", "--json", url=clean_db).ok().json()
    assert (shown["max_attempts"], shown["rule_text"]) == (5, "every 5 minutes")


def test_a_counted_schedule_shows_its_runs_left(clean_db: str) -> None:
    out = run_cli("schedules", "add", "c", "--kind", "k", "--every", "1h", "--count", "6", "--start",
                  "2030-01-01T00:00:00Z", url=clean_db).ok().stdout
    assert out.startswith("schedule c: every 1 hour from 2030-01-01 00:00:00 (UTC), 6 times")
    shown = run_cli("schedules", "show", "c", "--json", url=clean_db).ok().json()
    assert (shown["runs_left"], shown["fired"], len(shown["next_fires"])) == (6, 0, 6)
