"""Linkcare's System Daemon on finejobs: six maintenance tasks over a small app schema, and one external service.

The plan is Linkcare's default one (``PLAN``): OUTDATED_TASKS_CHECK and AVAILABLE_TASKS_CHECK every 300 s,
SERVICE_TASKS every 60 s, DELAYED_NOTIFICATIONS every 300 s, PURGE_DATABASE daily at 00:00 and
EXPIRED_ADMISSIONS daily at 01:00 (in ``TIMEZONE``). Each task is a clustered schedule: however many daemons
run, each tick runs once, and never while the task's previous run is unfinished (overlap "skip").

The external service (``services.json``, Linkcare's format) is called by HTTP POST on its own plan: the wait
before the next call depends on how the last one ended (on_success, on_idle, on_error, on_timeout), one call
at a time across every daemon (``allow_concurrency: false``). finejobs.services declares it.

``declare(queue, time_scale=..., service_url=...)`` declares them all; ``time_scale`` (e.g. 0.01) shortens the
intervals and the service's timeout for a demo or a test, never the daily times (run those now with
``finejobs schedules run-now PURGE_DATABASE``).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import finejobs
from finejobs.services import declare_services, parse_services
from finejobs.store import normalize_url

log = logging.getLogger("system_daemon")

queue = finejobs.Queue()

TIMEZONE = "Europe/Madrid"
# Linkcare's default plan: seconds between runs, or a daily time of day.
PLAN: dict[str, int | str] = {
    "OUTDATED_TASKS_CHECK": 300,
    "AVAILABLE_TASKS_CHECK": 300,
    "SERVICE_TASKS": 60,
    "DELAYED_NOTIFICATIONS": 300,
    "PURGE_DATABASE": "00:00",
    "EXPIRED_ADMISSIONS": "01:00",
}
PURGE_KEEPS = "1 month"  # PURGE_DATABASE deletes the log and the sent notifications older than this
SERVICES_FILE = Path(__file__).with_name("services.json")
KIND_PREFIX = "system."

SCHEMA = """
CREATE TABLE IF NOT EXISTS sd_tasks (
    id bigserial PRIMARY KEY, title text NOT NULL, assignee text NOT NULL DEFAULT 'professional',
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'available', 'done', 'outdated')),
    available_from timestamptz NOT NULL DEFAULT now(), due_at timestamptz, done_at timestamptz);
CREATE TABLE IF NOT EXISTS sd_notifications (
    id bigserial PRIMARY KEY, recipient text NOT NULL, message text NOT NULL,
    send_at timestamptz NOT NULL, sent_at timestamptz);
CREATE TABLE IF NOT EXISTS sd_admissions (
    id bigserial PRIMARY KEY, patient text NOT NULL,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'discharged')),
    expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS sd_log (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), task text NOT NULL, message text NOT NULL);
CREATE INDEX IF NOT EXISTS sd_log_at ON sd_log (at);
"""
SCHEMA_LOCK = 7_261_001  # an advisory lock: daemons starting together create the tables one at a time

# Each task: one statement on the app's tables; it returns the rows it changed.
TASKS: dict[str, str] = {
    "OUTDATED_TASKS_CHECK": "UPDATE sd_tasks SET status = 'outdated' "
                            "WHERE status IN ('pending', 'available') AND due_at < now()",
    "AVAILABLE_TASKS_CHECK": "UPDATE sd_tasks SET status = 'available' WHERE status = 'pending' "
                             "AND available_from <= now() AND (due_at IS NULL OR due_at >= now())",
    "SERVICE_TASKS": "UPDATE sd_tasks SET status = 'done', done_at = now() "
                     "WHERE assignee = 'service' AND status = 'available'",
    "DELAYED_NOTIFICATIONS": "UPDATE sd_notifications SET sent_at = now() WHERE sent_at IS NULL AND send_at <= now()",
    "PURGE_DATABASE": f"WITH log AS (DELETE FROM sd_log WHERE at < now() - interval '{PURGE_KEEPS}' RETURNING 1), "
                      f"sent AS (DELETE FROM sd_notifications WHERE sent_at < now() - interval '{PURGE_KEEPS}' "
                      "RETURNING 1) SELECT (SELECT count(*) FROM log) + (SELECT count(*) FROM sent)",
    "EXPIRED_ADMISSIONS": "UPDATE sd_admissions SET status = 'expired' WHERE status = 'active' AND expires_at < now()",
}

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def engine() -> sa.Engine:
    """The app's own connection pool on the queue's database (the tasks' SQL is the app's, not finejobs')."""
    url = queue.url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = sa.create_engine(normalize_url(url), pool_size=2, max_overflow=2, pool_pre_ping=True)
        return _engines[url]


def create_schema(target: sa.Engine | None = None) -> None:
    """The app's tables (idempotent; safe from several daemons at once)."""
    with (target or engine()).begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        conn.exec_driver_sql(SCHEMA)


def run_task(name: str) -> object:
    """Run one maintenance task: its statement, and a line in the app's log (the purge's own line too)."""
    with engine().begin() as conn:
        result = conn.execute(sa.text(TASKS[name]))
        changed = int(result.scalar_one()) if result.returns_rows else result.rowcount
        conn.execute(sa.text("INSERT INTO sd_log (task, message) VALUES (:task, :message)"),
                     {"task": name, "message": f"{changed} row(s)"})
    log.info("%s: %d row(s)", name, changed)
    return {"changed": changed} if changed else finejobs.Idle  # Idle: the run found nothing to do


def _task_kind(name: str) -> finejobs.JobKind[Any, Any]:
    def handler(payload: dict[str, Any]) -> object:
        return run_task(name)

    handler.__qualname__ = handler.__name__ = name.lower()
    # No retries: the next tick is the retry. A run must start before the next tick (the default expiry).
    return queue.job(KIND_PREFIX + name, retry=finejobs.Retry(max_attempts=1))(handler)


KINDS = {name: _task_kind(name) for name in TASKS}


def rule_for(name: str, time_scale: float = 1.0) -> finejobs.Rule:
    """The task's rule in Linkcare's plan; intervals multiplied by ``time_scale``, daily times as they are."""
    when = PLAN[name]
    if isinstance(when, str):
        return finejobs.DailyAt(when, tz=TIMEZONE)
    return finejobs.Every(timedelta(seconds=when * time_scale))


def declare(target: finejobs.Queue, *, time_scale: float = 1.0, service_url: str | None = None) -> None:
    """Declare the six tasks (clustered schedules) and the external service on ``target`` (the app's queue)."""
    if not 0 < time_scale <= 1:
        raise finejobs.ConfigurationError(f"time_scale must be over 0 and at most 1, got {time_scale}")
    for name, kind in KINDS.items():
        target.schedule(name, kind, rule_for(name, time_scale), overlap="skip", misfire="coalesce",
                        description=f"Linkcare maintenance task, by default {rule_for(name).describe()}")
    declare_services(target, services(time_scale=time_scale, service_url=service_url))


def services(*, time_scale: float = 1.0, service_url: str | None = None) -> list[Any]:
    """The external services of ``services.json``: timeouts and intervals scaled, the endpoint replaced."""
    raw = json.loads(SERVICES_FILE.read_text(encoding="utf-8"))
    for item in raw:
        if service_url is not None:
            item["endpoint"] = service_url
        item["timeout"] = item.get("timeout", 30) * time_scale
        plan = item["execution_plan"]
        if plan.get("period") == "interval":
            plan["intervals"] = {key: value * time_scale for key, value in plan["intervals"].items()}
    return parse_services(raw, where=str(SERVICES_FILE))
