"""The scheduler: every worker runs one; each tick of a schedule becomes exactly one ordinary job.

```
schedule rows ──(due: next_fire_at <= now)──> plan (misfire, overlap) ──> one transaction:
    UPDATE finejobs_schedules SET next_fire_at = :next ... WHERE id = :id AND version = :v
                                                           AND next_fire_at = :expected   (compare-and-set)
    INSERT INTO finejobs_jobs (... schedule_id, fire_at) ON CONFLICT (schedule_id, fire_at) DO NOTHING
```
Any number of schedulers may race: the compare-and-set lets one of them move a schedule on, and the
unique (schedule_id, fire_at) index makes a second job for the same tick impossible whatever happens.
A rule's count (``Every(count=6)``, RRULE COUNT) counts the ticks that ran: the row's ``fired`` grows in
the same compare-and-set, so ticks that were skipped or passed while the schedule was paused do not use
up the count (docs/schedules.md, "Counted schedules").
The operations (list, add, pause, run-now...) are in finejobs.schedule_ops.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from finejobs import limits
from finejobs._wallclock import aware
from finejobs.errors import FinejobsError, InvalidJobOptions, PayloadError
from finejobs.limits import (
    MAX_ATTEMPTS,
    MAX_DURATION,
    MAX_MESSAGE_CHARS,
    MAX_PAYLOAD_BYTES,
    check_duration,
    check_int,
    check_text,
    clamp_after,
)
from finejobs.payloads import encode as encode_payload
from finejobs.schedules import (
    Adaptive,
    Outcome,
    Rule,
    check_can_fire,
    first_fire,
    next_fire,
    rule_from_spec,
    runs_left,
)
from finejobs.sharding import DEFAULT_SHARD, validate_shard_name
from finejobs.store import NewJob, ScheduleRow

if TYPE_CHECKING:
    from finejobs.kinds import JobKind
    from finejobs.queue import Queue

log = logging.getLogger("finejobs.scheduler")

Misfire = Literal["coalesce", "all", "skip"]
Overlap = Literal["skip", "allow", "wait"]
MISFIRES: tuple[Misfire, ...] = ("coalesce", "all", "skip")
OVERLAPS: tuple[Overlap, ...] = ("skip", "allow", "wait")
_WALK_LIMIT = 10_000
_NAME_LIMIT = 200
MAX_MISFIRE_LIMIT = limits.MAX_MISFIRE_LIMIT  # catch-up runs of one schedule in one pass (misfire="all")


class ScheduleNotFound(FinejobsError, LookupError):
    """No schedule has this name."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule's definition: what ``queue.schedule(...)`` declares and ``queue.schedules.add`` stores."""

    name: str
    kind: str
    rule: Rule
    payload: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    shard: str = DEFAULT_SHARD
    priority: int = 0
    max_attempts: int = 3
    start: datetime | None = None
    end: datetime | None = None
    misfire: Misfire = "coalesce"
    misfire_limit: int = 100
    misfire_grace: timedelta = timedelta(seconds=60)
    overlap: Overlap = "skip"
    expires_in: timedelta | None = None
    payload_json: str = ""  # the payload as stored (finejobs.payloads.encode: exactly what the jobs get)

    def values(self, *, now: datetime) -> dict[str, Any]:
        """The row's columns, with the first fire at or after ``now`` (the payload as its JSON text)."""
        payload = self.payload_json or json.dumps(self.payload, separators=(",", ":"))
        return {
            "name": self.name, "description": self.description, "kind": self.kind, "payload": payload,
            "shard": self.shard, "priority": self.priority, "max_attempts": self.max_attempts,
            "rule": self.rule.to_spec(), "timezone": self.rule.tz, "start_at": self.start, "end_at": self.end,
            "misfire": self.misfire, "misfire_limit": self.misfire_limit, "misfire_grace": self.misfire_grace,
            "overlap": self.overlap, "expires_in": self.expires_in,
            "next_fire_at": first_fire(self.rule, now=now, start=self.start, end=self.end),
        }


def make_spec(queue: Queue | None, name: str, kind: str | JobKind[Any, Any], rule: Rule, *,
              payload: Any = None, description: str | None = "", shard: str | None = None,
              priority: int | None = None, max_attempts: int | None = None, start: datetime | None = None,
              end: datetime | None = None, misfire: str = "coalesce", misfire_limit: int = 100,
              misfire_grace: timedelta | float | None = timedelta(seconds=60), overlap: str = "skip",
              expires_in: timedelta | float | None = None) -> ScheduleSpec:
    """Check every option and the payload (through the kind's model when the kind is known).

    Every refusal is a FinejobsError naming the option (InvalidJobOptions, PayloadError), raised before
    anything is written; the limits are finejobs.limits' (see docs/guarantees.md)."""
    from finejobs.kinds import JobKind

    check_text("name", name, max_chars=_NAME_LIMIT)
    if not name.strip():
        raise InvalidJobOptions("name must not be blank")
    if not isinstance(rule, Rule):
        raise InvalidJobOptions(f"rule must be a finejobs rule (Cron, RRule, Every...), got {type(rule).__name__}")
    job_kind = kind if isinstance(kind, JobKind) else (queue.kinds.get(kind) if queue is not None else None)
    kind_name = kind.name if isinstance(kind, JobKind) else kind
    check_text("kind", kind_name, max_chars=200)
    text = check_text("description", description or "", empty=True, max_chars=MAX_MESSAGE_CHARS)
    limit = getattr(queue, "max_payload_bytes", MAX_PAYLOAD_BYTES) if queue is not None else MAX_PAYLOAD_BYTES
    payload_json = schedule_payload(job_kind, kind_name, payload, max_bytes=limit)
    if misfire not in MISFIRES:
        raise InvalidJobOptions(f"misfire must be one of {', '.join(MISFIRES)}, got {misfire!r}"[:300])
    if overlap not in OVERLAPS:
        raise InvalidJobOptions(f"overlap must be one of {', '.join(OVERLAPS)}, got {overlap!r}"[:300])
    check_int("misfire_limit", misfire_limit, 1, MAX_MISFIRE_LIMIT)
    grace = check_duration("misfire_grace", timedelta(seconds=60) if misfire_grace is None else misfire_grace,
                           strict=False)
    assert grace is not None
    window = check_duration("expires_in", expires_in)
    start_utc, end_utc = aware("start", start), aware("end", end)
    if start_utc is not None and end_utc is not None and end_utc < start_utc:
        raise InvalidJobOptions(f"end ({end_utc.isoformat()}) is before start ({start_utc.isoformat()})")
    check_can_fire(rule, start=start_utc, end=end_utc)
    default_priority = job_kind.priority if job_kind is not None else 0
    prio = check_int("priority", default_priority if priority is None else priority, -32768, 32767)
    if max_attempts is None:
        attempts = job_kind.retry.max_attempts if job_kind is not None else 3
    else:
        attempts = check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS)
    return ScheduleSpec(
        name=name, kind=kind_name, rule=rule, payload=json.loads(payload_json), payload_json=payload_json,
        description=text,
        shard=validate_shard_name(DEFAULT_SHARD if shard is None else shard), priority=prio,
        max_attempts=attempts, start=start_utc, end=end_utc, misfire=misfire,
        misfire_limit=misfire_limit, misfire_grace=grace, overlap=overlap,
        expires_in=window,
    )


@dataclass(frozen=True)
class LocalSchedule:
    """A schedule that lives in each worker process, not in the database: ``queue.schedule(..., local=True)``.

    Every worker process fires it on its own, on its rule, by calling ``call()`` in that process (no job row,
    no uniqueness across processes); a call still running when the next tick comes makes that tick skipped.
    ``kind`` names the job kind whose handler it calls (None for a plain callable). See docs/services.md.
    """

    name: str
    rule: Rule
    call: Callable[[], Any] = field(compare=False, repr=False)
    kind: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    start: datetime | None = None
    end: datetime | None = None

    @property
    def target(self) -> str:
        """What it calls, in words: the kind, or the callable's qualified name."""
        if self.kind is not None:
            return self.kind
        return str(getattr(self.call, "__qualname__", None) or repr(self.call))


_LOCAL_OPTIONS = ("payload", "description", "start", "end")


def make_local(queue: Queue | None, name: str, target: str | JobKind[Any, Any] | Callable[..., Any], rule: Rule, *,
               payload: Any = None, description: str | None = "", start: datetime | None = None,
               end: datetime | None = None, **refused: Any) -> LocalSchedule:
    """Check a local schedule: a job kind (its handler is called with the payload, parsed by the kind's model) or
    a callable taking no arguments (then no payload). Options that only mean something for jobs (shard,
    misfire, overlap, priority...) are refused, naming them."""
    from finejobs.kinds import JobKind

    if refused:
        raise InvalidJobOptions(f"a local schedule takes only {', '.join(_LOCAL_OPTIONS)}; not "
                                f"{', '.join(sorted(refused))} (those are for schedules stored in the database)")
    check_text("name", name, max_chars=_NAME_LIMIT)
    if not name.strip():
        raise InvalidJobOptions("name must not be blank")
    if not isinstance(rule, Rule):
        raise InvalidJobOptions(f"rule must be a finejobs rule (Cron, RRule, Every...), got {type(rule).__name__}")
    text = check_text("description", description or "", empty=True, max_chars=MAX_MESSAGE_CHARS)
    start_utc, end_utc = aware("start", start), aware("end", end)
    if start_utc is not None and end_utc is not None and end_utc < start_utc:
        raise InvalidJobOptions(f"end ({end_utc.isoformat()}) is before start ({start_utc.isoformat()})")
    check_can_fire(rule, start=start_utc, end=end_utc)
    if isinstance(target, str):
        known = queue.kinds.get(target) if queue is not None else None
        if known is None:
            raise InvalidJobOptions(f"local schedule {name!r}: unknown job kind {target!r} (declare it first, or "
                                    "pass the kind or a callable)")
        target = known
    if isinstance(target, JobKind):
        kind = target
        if kind.takes_context:
            raise InvalidJobOptions(f"local schedule {name!r}: the handler of {kind.name!r} takes a job context, "
                                    "but a local schedule makes no job: give it a handler taking the payload only")
        data = json.loads(schedule_payload(kind, kind.name, payload))

        def call() -> Any:
            return kind.handler(kind.parse(data))

        return LocalSchedule(name=name, rule=rule, call=call, kind=kind.name, payload=data, description=text,
                             start=start_utc, end=end_utc)
    if not callable(target):
        raise InvalidJobOptions(f"local schedule {name!r}: expected a job kind, its name or a callable, "
                                f"got {type(target).__name__}")
    if payload is not None:
        raise InvalidJobOptions(f"local schedule {name!r}: a callable is called without arguments, so no payload "
                                "(declare a job kind to pass one)")
    try:
        inspect.signature(target).bind()
    except TypeError:
        raise InvalidJobOptions(f"local schedule {name!r}: {target!r} must be callable without arguments") from None
    except ValueError:  # no signature to read (some builtins): it will tell at its first call
        pass
    return LocalSchedule(name=name, rule=rule, call=target, description=text, start=start_utc, end=end_utc)


def schedule_payload(job_kind: JobKind[Any, Any] | None, kind: str, payload: Any, *,
                     max_bytes: int = MAX_PAYLOAD_BYTES) -> str:
    """A schedule's payload as the JSON text it is stored as, checked as a job's payload is at enqueue
    (the kind's model when the kind is known, a JSON object, finejobs.payloads' rules, ``max_bytes``).
    PayloadError names the field."""
    data: Any = {} if payload is None else payload
    if job_kind is not None:
        data = job_kind.validate(data)
    elif not isinstance(data, Mapping):
        raise PayloadError(kind, ["<root>"], f"expected a JSON object, got {type(data).__name__}")
    return encode_payload(kind, data, max_bytes=max_bytes)


def spec_from_row(row: ScheduleRow, rule: Rule | None = None) -> ScheduleSpec:
    return ScheduleSpec(
        name=row.name, kind=row.kind, rule=rule if rule is not None else rule_for(row.rule), payload=dict(row.payload),
        description=row.description, shard=row.shard, priority=row.priority, max_attempts=row.max_attempts,
        start=row.start_at, end=row.end_at, misfire=row.misfire,  # type: ignore[arg-type]
        misfire_limit=row.misfire_limit, misfire_grace=row.misfire_grace,
        overlap=row.overlap,  # type: ignore[arg-type]
        expires_in=row.expires_in,
    )


_RULES: dict[str, Rule] = {}  # a rule per stored spec (rules are immutable); the scheduler reads thousands a pass
_RULES_KEPT = 1024


def rule_for(spec: Mapping[str, Any]) -> Rule:
    """The rule a row stores (rules are immutable, so one object per spec is shared)."""
    if not isinstance(spec, Mapping):
        return rule_from_spec(spec)  # refused, naming what it got
    key = repr(sorted(spec.items()))  # cheaper than JSON; a spec is a flat mapping of JSON values
    rule = _RULES.get(key)
    if rule is None:
        rule = rule_from_spec(json.loads(json.dumps(spec)))
        if len(_RULES) >= _RULES_KEPT:
            _RULES.clear()
        _RULES[key] = rule
    return rule


def outcome_of(state: str | None, result: str | None) -> Outcome | None:
    """How a finished run ended, as an adaptive rule sees it; None while it is unfinished."""
    if state in (None, "available", "running"):
        return None
    if result == "timeout":
        return "timeout"
    if state == "succeeded":
        return "idle" if result == "idle" else "success"
    return "error"


def status_of(row: ScheduleRow) -> str:
    """active, paused, finished (no tick left) or failed (the last run failed, or the rule is broken)."""
    if row.paused:
        return "paused"
    if row.last_error or row.last_state in ("failed", "expired"):
        return "failed"
    if row.next_fire_at is None and not row.unfinished and row.rule.get("type") != "adaptive":
        return "finished"
    return "active"


@dataclass(frozen=True)
class Plan:
    """What one scheduler pass does to one due schedule."""

    fires: list[datetime]
    skipped: int
    next_fire_at: datetime | None


def plan(row: ScheduleRow, rule: Rule, now: datetime, *, looked: datetime | None = None) -> Plan | None:
    """Which ticks to run now, how many to skip, and the next fire; None to leave the schedule as it is.

    Misfire (several ticks due at once, after downtime): ``coalesce`` runs the latest once, ``all`` runs
    each, the latest ``misfire_limit`` of them, ``skip`` runs only a tick that is at most ``misfire_grace``
    late. Overlap (a run of this schedule is unfinished): ``skip`` skips the ticks, ``wait`` keeps them
    due until it finishes, ``allow`` runs them anyway.

    ``looked``: when this scheduler last looked at the due schedules (the start of its previous pass, while
    it has been running since). A tick after that was not yet due then, so it is no misfire, whatever the
    policy: it runs (a pass that took longer than a rule's period still makes every tick of it). The misfire
    policy is for the ticks due before, the ones a downtime missed.
    """
    if row.next_fire_at is None or row.next_fire_at > now:
        return None
    left = runs_left(rule, row.fired)
    if left == 0:  # the count is used up (it was lowered by an update): finished
        return Plan(fires=[], skipped=0, next_fire_at=None)
    if isinstance(rule, Adaptive):  # one run; the next fire is set when it has finished
        fires, skipped, upcoming = [row.next_fire_at], 0, None
    else:
        keep = row.misfire_limit if row.misfire == "all" else 1
        due: deque[datetime] = deque(maxlen=keep)  # missed: due before the last look (or there was none)
        fresh: deque[datetime] = deque(maxlen=MAX_MISFIRE_LIMIT)  # came due since the last look
        count = 0
        tick: datetime | None = row.next_fire_at
        while tick is not None and tick <= now:
            (fresh if looked is not None and tick > looked else due).append(tick)
            count += 1
            if count % _WALK_LIMIT == 0:  # a fast rule after a long outage: jump close to now
                for window in (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)):
                    probe = next_fire(rule, now - window, start=row.start_at, end=row.end_at)
                    if probe is not None and probe <= now and probe > tick:
                        tick = probe
                        break
                else:
                    tick = next_fire(rule, tick, start=row.start_at, end=row.end_at)
                continue
            tick = next_fire(rule, tick, start=row.start_at, end=row.end_at)
        upcoming = tick
        if not due:
            fires = []
        elif row.misfire == "all":
            fires = list(due)
        elif row.misfire == "skip":
            fires = [due[-1]] if now - due[-1] <= row.misfire_grace else []
        else:
            fires = [due[-1]]
        fires += fresh
        skipped = count - len(fires)
    if row.unfinished and fires:
        if row.overlap == "wait":
            return None
        if row.overlap == "skip":
            skipped, fires = skipped + len(fires), []
    if left is not None:  # a counted rule: the ticks that run count, until the count is reached
        if len(fires) > left:
            skipped, fires = skipped + len(fires) - left, fires[:left]
        if len(fires) == left:
            upcoming = None
    return Plan(fires=fires, skipped=skipped, next_fire_at=upcoming)


def job_for(row: ScheduleRow, rule: Rule, fire_at: datetime, now: datetime, *, last: bool = False) -> NewJob:
    """The job of one tick: due at the tick; by default it must start before the tick after it (counted
    from now for a late tick), or, with expires_in, within that long. The ``last`` run of a counted rule
    has no tick after it, so no default expiry."""
    begin = max(fire_at, now)
    if row.expires_in is not None:
        expires_at: datetime | None = clamp_after(begin, row.expires_in, most=MAX_DURATION)
    elif isinstance(rule, Adaptive) or last:
        expires_at = None
    else:
        following = next_fire(rule, fire_at, start=row.start_at, end=row.end_at)
        expires_at = clamp_after(begin, following - fire_at, most=MAX_DURATION) if following is not None else None
    return NewJob(kind=row.kind, payload=dict(row.payload), payload_json="", shard=row.shard,
                  priority=row.priority, run_at=fire_at, expires_at=expires_at, max_attempts=row.max_attempts,
                  unique_key=None)


def declare_all(queue: Queue, *, now: datetime, database: str | None = None) -> list[str]:
    """Upsert every schedule ``queue`` declares (worker start does this) in its shard's database, or only
    those of ``database``; returns the names written."""
    changed = []
    shard_map = queue.shard_map
    for spec in queue.declared_schedules.values():
        home = shard_map.database_for(spec.shard)
        if database is not None and home != database:
            continue
        if queue.store_of(home).schedule_upsert_declared(values=spec.values(now=now), now=now):
            changed.append(spec.name)
    if changed:
        log.info("schedules declared in code, written: %s", ", ".join(changed))
    return changed


def with_changes(spec: ScheduleSpec, **changes: Any) -> ScheduleSpec:
    if "payload" in changes and "payload_json" not in changes:
        changes["payload_json"] = ""  # the stored text follows the new payload
    return replace(spec, **changes)
