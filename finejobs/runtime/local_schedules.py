"""Local schedules: run in every worker process, on each one's own clock, with no row and no job.

```
queue.local_schedules ──(armed at start: first fire of each rule)──> LocalSchedules.run_once(now), every 0.1 s:
    due and idle     -> call it on a thread of its own (a slow one never delays the others)
    due and running  -> skip the tick (logged): a local schedule never overlaps itself in a process
    next tick        -> the rule's first fire after now (ticks missed meanwhile are coalesced into this one);
                        an Adaptive rule: its delay for how the call ended, counted from its end
```
A call that raises is logged with its traceback and counted; it never stops the worker. What each schedule
did last is in the worker's registry row (``info["local_schedules"]``), shown by ``finejobs workers``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from finejobs import outcomes
from finejobs._wallclock import first_fire, next_fire
from finejobs.limits import log_safe
from finejobs.runtime.services import Service
from finejobs.scheduler import LocalSchedule
from finejobs.schedules import Adaptive, Outcome

if TYPE_CHECKING:
    from finejobs.runtime.worker import Worker

log = logging.getLogger("finejobs.local")

LOCAL_INTERVAL = 0.1  # seconds between looks at the local schedules (no database: cheap)


@dataclass
class _Entry:
    spec: LocalSchedule
    next_at: datetime | None
    last_run_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_outcome: Outcome | None = None
    last_error: str | None = None
    last_duration: float | None = None
    runs: int = 0
    skipped: int = 0
    errors: int = 0
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class LocalSchedules(Service):
    """Fires ``queue.local_schedules`` in this process; see the module docstring."""

    name = "local-schedules"

    def __init__(self, worker: Worker, interval: float = LOCAL_INTERVAL) -> None:
        super().__init__(worker, interval)
        self._entries: dict[str, _Entry] | None = None
        self._lock = threading.Lock()

    def arm(self, now: datetime) -> None:
        """Read the queue's local schedules and set each one's first fire (done by the first pass)."""
        with self._lock:
            if self._entries is None:
                self._entries = {
                    name: _Entry(spec, first_fire(spec.rule, now=now, start=spec.start, end=spec.end))
                    for name, spec in self.worker.queue.local_schedules.items()
                }
                if self._entries:
                    log.info("local schedules: %s", "; ".join(
                        f"{e.spec.name} ({e.spec.rule.describe()}) first at {_iso(e.next_at)}"
                        for e in self._entries.values()))

    def run_once(self, now: datetime) -> int:
        """One look: start the due calls, skip those still running; returns how many calls it started."""
        self.arm(now)
        assert self._entries is not None
        started = 0
        for entry in list(self._entries.values()):
            try:
                started += self._look(entry, now)
            except Exception as exc:  # a broken rule or no thread to be had: this schedule stops, not the worker
                with self._lock:
                    entry.next_at, entry.last_error = None, log_safe(outcomes.describe(exc))
                log.error("local schedule %r: %s; it stays stopped until the process restarts", entry.spec.name,
                          entry.last_error, exc_info=exc)
        return started

    def _look(self, entry: _Entry, now: datetime) -> int:
        """Start one schedule's call if it is due and idle (1), skip its tick if it still runs (0)."""
        with self._lock:
            if entry.next_at is None or entry.next_at > now:
                return 0
            due = entry.next_at
            if entry.running:
                entry.skipped += 1
                entry.next_at = self._following(entry, now)
                log.warning("local schedule %r: tick %s skipped: its previous run (started %s) is still running; "
                            "next at %s", entry.spec.name, due.isoformat(), _iso(entry.last_run_at),
                            _iso(entry.next_at))
                return 0
            entry.last_run_at, entry.runs = now, entry.runs + 1
            entry.next_at = None if isinstance(entry.spec.rule, Adaptive) else self._following(entry, now)
            entry.thread = threading.Thread(target=self._call, args=(entry, due), daemon=True,
                                            name=f"finejobs-local-{entry.spec.name}"[:60])
            entry.thread.start()
            return 1

    @staticmethod
    def _following(entry: _Entry, now: datetime) -> datetime | None:
        spec = entry.spec
        if isinstance(spec.rule, Adaptive):
            return entry.next_at  # re-armed when the running call ends
        if spec.rule.count is not None and entry.runs >= spec.rule.count:
            return None  # a counted rule counts the calls this process made
        return next_fire(spec.rule, now, start=spec.start, end=spec.end)

    def _call(self, entry: _Entry, due: datetime) -> None:
        spec = entry.spec
        began = time.monotonic()
        error: str | None = None
        outcome: Outcome = "success"
        try:
            result = spec.call()
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            if outcomes.result_of(result) == "idle":
                outcome = "idle"
        except BaseException as exc:  # nothing a local schedule does may stop the worker
            outcome, error = "error", log_safe(outcomes.describe(exc))
            log.error("local schedule %r (tick %s) failed: %s", spec.name, due.isoformat(), error, exc_info=exc)
        duration = time.monotonic() - began
        finished = self.worker.clock()
        with self._lock:
            entry.last_finished_at, entry.last_outcome, entry.last_error = finished, outcome, error
            entry.last_duration = duration
            if error is not None:
                entry.errors += 1
            if isinstance(spec.rule, Adaptive):
                upcoming = spec.rule.next_after_outcome(finished, outcome)
                entry.next_at = None if upcoming is None or (spec.end and upcoming > spec.end) else upcoming
        if error is None:
            log.info("local schedule %r (tick %s): %s in %.1fms; next at %s", spec.name, due.isoformat(), outcome,
                     duration * 1000, _iso(entry.next_at))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no call is running (for tests and shutdown); False if some still run after ``timeout``."""
        deadline = time.monotonic() + timeout
        for entry in list((self._entries or {}).values()):
            thread = entry.thread
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(e.running for e in (self._entries or {}).values())

    def join(self, timeout: float) -> None:
        super().join(timeout)
        if not self.wait_idle(max(0.0, timeout)):
            running = [e.spec.name for e in (self._entries or {}).values() if e.running]
            log.warning("local schedules still running at shutdown (left to end with the process): %s",
                        ", ".join(running))

    def snapshot(self) -> list[dict[str, Any]]:
        """Each local schedule as the registry row shows it (JSON-ready)."""
        with self._lock:
            entries = list((self._entries or {}).values())
            return [{
                "name": e.spec.name, "calls": e.spec.target, "rule": e.spec.rule.describe(),
                "running": e.running, "last_run_at": _iso(e.last_run_at),
                "last_finished_at": _iso(e.last_finished_at), "last_outcome": e.last_outcome,
                "last_error": e.last_error, "last_duration": e.last_duration, "next_run_at": _iso(e.next_at),
                "runs": e.runs, "skipped": e.skipped, "errors": e.errors,
            } for e in entries]


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
