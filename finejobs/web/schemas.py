"""The REST API's pydantic models: what each endpoint takes and answers, hence its OpenAPI schema.

Answers are built from the operations API's results (``to_json()``); every model forbids properties it does
not declare, so the schema says exactly what a response holds. Times are ISO 8601 with an offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from finejobs.jobs import JobState
from finejobs.limits import MAX_ATTEMPTS, MAX_MISFIRE_LIMIT
from finejobs.scheduler import Misfire, Overlap

MAX_ID = 2**63 - 1
Text = Annotated[str, Field(max_length=200)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Day = Literal["MO", "TU", "WE", "TH", "FR", "SA", "SU", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
              "Saturday", "Sunday"]
TimeOfDay = Annotated[str, Field(pattern=r"^[0-9]{2}:[0-9]{2}(:[0-9]{2})?$", description="HH:MM or HH:MM:SS")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors


class Message(Model):
    """An error without a field: not signed in (401), not allowed (403), not found (404), a conflict (409)."""

    detail: str


class Problem(BaseModel):
    """One refused field: ``loc`` names it (``["body", "payload", "dose"]``, ``["query", "limit"]``)."""

    model_config = ConfigDict(extra="allow")  # FastAPI's own validation errors add "input" and "ctx"

    loc: list[str | int]
    msg: str
    type: str


class Problems(Model):
    """Bad input (422): the same refusals as the Python API's finejobs errors, each naming its field."""

    detail: list[Problem]


# ---------------------------------------------------------------- jobs


class AttemptError(Model):
    attempt: int
    at: datetime
    error: str
    message: str
    traceback: str | None
    worker: str | None


class Job(Model):
    """A job as stored (``scheduled`` and ``available`` told apart by ``run_at``)."""

    id: int
    kind: str
    shard: str
    payload: dict[str, Any]
    state: JobState
    priority: int
    run_at: datetime
    expires_at: datetime | None
    attempt: int
    max_attempts: int
    unique_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    errors: list[AttemptError]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    claims: int
    schedule_id: int | None
    fire_at: datetime | None
    result: str | None
    defect: str | None
    trace: dict[str, str] | None
    group_id: int | None = Field(None, description="The group this job is a member of (queue.group), if any.")


class JobPage(Model):
    """A page of jobs, newest first: follow ``next_cursor`` (same filter) until it is null. A page examines a
    bounded number of rows, so it may hold fewer jobs than the limit, even none, and still have a cursor."""

    jobs: list[Job]
    next_cursor: str | None
    examined: int


class Count(Model):
    """How many jobs match; ``at_least``: counting stopped at its cap, there may be more."""

    count: int
    at_least: bool


class Enqueue(Model):
    """A job of a kind the queue declares; the payload is validated by the kind's model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "dosage.alert", "payload": {"patient_id": 42, "dose": "08:00"}, "shard": "district-3",
         "unique_key": "dose:42:2026-11-22T08:00"}]})

    kind: Annotated[str, Field(min_length=1, max_length=200)]
    payload: dict[str, Any] = Field(default_factory=dict)
    shard: Text | None = None
    run_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    priority: int | None = None
    unique_key: str | None = None


class CancelRequest(Model):
    reason: str = "cancelled by operator"


class Filter(Model):
    """Which jobs: every field given must match (``error``: text in the last error, any case)."""

    state: JobState | None = None
    kind: Text | None = None
    shard: Text | None = None
    schedule: Text | None = None
    error: Text | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    finished_after: AwareDatetime | None = None
    finished_before: AwareDatetime | None = None
    database: Text | None = None


class Bulk(Model):
    """Retry, cancel or delete every job matching ``filter`` (not just a page); ``dry_run`` counts them.
    The filter must name something besides ``database``: acting on every job is refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "retry", "filter": {"state": "failed", "kind": "dosage.alert"}, "dry_run": True}]})

    action: Literal["retry", "cancel", "delete"]
    filter: Filter
    dry_run: bool = False
    reason: str | None = Field(None, description="cancel only: recorded on each job")


class BulkResult(Model):
    """``matched``: jobs in the states the action applies to; ``changed``: those changed (a dry run: 0)."""

    action: str
    filter: dict[str, str]
    matched: int
    changed: int
    dry_run: bool
    at_least: bool


# ---------------------------------------------------------------- counts, kinds, shards, pauses, workers, audit


class Pause(Model):
    """A paused kind, shard, or kind within a shard (null: any)."""

    kind: str | None
    shard: str | None
    paused_at: datetime
    paused_by: str | None
    reason: str | None


class PauseRequest(Model):
    """Pause a kind, a shard, or a kind within a shard (at least one of them)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"shard": "district-3", "reason": "gateway maintenance"}]})

    kind: Text | None = None
    shard: Text | None = None
    reason: str | None = None


class Resumed(Model):
    resumed: bool


class Overview(Model):
    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    by_shard: dict[str, dict[str, int]]
    lag_seconds: dict[str, float]
    expiring_soon: dict[str, int]
    paused: list[Pause]
    capped: bool
    at: datetime
    total: int


class Activity(Model):
    """Per minute from ``since``, oldest first: jobs succeeded, failed, and the longest wait among them."""

    since: datetime
    succeeded: list[int]
    failed: list[int]
    lag_seconds: list[float | None]
    capped: bool
    at: datetime


class Kind(Model):
    name: str
    shard: str | None
    routing: str | None
    priority: int
    max_attempts: int
    expires_in_seconds: float | None
    timeout_seconds: float | None
    payload_schema: dict[str, Any]
    paused: bool = Field(description="paused in every shard")


class Shard(Model):
    name: str
    database: str
    partition: str
    own_partition: bool
    counts: dict[str, int]
    placed: bool
    unfinished: int
    paused: bool


class Worker(Model):
    id: str
    host: str
    pid: int
    version: str
    database: str | None
    shards: list[str] | None
    kinds: list[str]
    concurrency: int
    started_at: datetime
    seen_at: datetime
    in_flight: int
    counters: dict[str, int]
    alive: bool
    info: dict[str, Any]


class AuditEntry(Model):
    id: int
    at: datetime
    actor: str
    action: str
    target: dict[str, Any]
    count: int | None
    detail: str | None


# ---------------------------------------------------------------- schedules: rules


class _Bounds(Model):
    tz: Text | None = Field(None, description="IANA time zone (default UTC)")
    start: AwareDatetime | None = None
    until: AwareDatetime | None = None


class _Counted(_Bounds):
    count: Annotated[int, Field(ge=1)] | None = None


class EveryRule(_Counted):
    """Every N seconds ... years from ``start`` (calendar months and years; whole days keep the local time)."""

    type: Literal["every"]
    seconds: Seconds = 0
    minutes: Seconds = 0
    hours: Seconds = 0
    days: Annotated[int, Field(ge=0)] = 0
    weeks: Annotated[int, Field(ge=0)] = 0
    months: Annotated[int, Field(ge=0)] = 0
    years: Annotated[int, Field(ge=0)] = 0


class _Calendar(_Counted):
    at: TimeOfDay = "00:00"


class WeeklyRule(_Calendar):
    """On some days of the week (MO ... SU or Monday ...), every ``every`` weeks."""

    type: Literal["weekly"]
    days: Annotated[list[Day], Field(min_length=1, max_length=7)]
    every: Annotated[int, Field(ge=1)] = 1


class MonthlyRule(_Calendar):
    """On ``day`` of the month (-1: the last), or on the ``nth`` ``weekday`` (nth -1: the last): one of them."""

    type: Literal["monthly"]
    day: Annotated[int, Field(ge=-31, le=31)] | None = None
    weekday: Day | None = None
    nth: Annotated[int, Field(ge=-5, le=5)] = 1
    every: Annotated[int, Field(ge=1)] = 1


class YearlyRule(_Calendar):
    """Each year on ``day`` of ``month``, or on its ``nth`` ``weekday`` (the first Sunday of March): one of them."""

    type: Literal["yearly"]
    month: Annotated[int, Field(ge=1, le=12)]
    day: Annotated[int, Field(ge=-31, le=31)] | None = None
    weekday: Day | None = None
    nth: Annotated[int, Field(ge=-5, le=5)] = 1


class DailyAtRule(_Bounds):
    type: Literal["daily_at"]
    times: Annotated[list[TimeOfDay], Field(min_length=1, max_length=100)]


class CronRule(_Bounds):
    """5 fields, or 6 with seconds first; L, W, # and names allowed."""

    type: Literal["cron"]
    expr: Annotated[str, Field(min_length=1, max_length=200)]


class RRuleRule(Model):
    """An RFC 5545 RRULE such as ``FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6`` (COUNT and UNTIL inside it)."""

    type: Literal["rrule"]
    rrule: Annotated[str, Field(min_length=1, max_length=2000)]
    tz: Text | None = None
    start: AwareDatetime | None = None


class OnceRule(Model):
    type: Literal["once"]
    at: AwareDatetime
    tz: Text | None = Field(None, description="the zone it is shown in (default UTC)")


class AdaptiveRule(Model):
    """The next run a delay (seconds) after the last one finished, chosen by its outcome."""

    type: Literal["adaptive"]
    on_success: Seconds
    on_idle: Seconds | None = None
    on_error: Seconds | None = None
    on_timeout: Seconds | None = None


RuleSpec = Annotated[EveryRule | WeeklyRule | MonthlyRule | YearlyRule | DailyAtRule | CronRule | RRuleRule
                     | OnceRule | AdaptiveRule, Field(discriminator="type")]


# ---------------------------------------------------------------- schedules


class _ScheduleOptions(Model):
    description: str | None = None
    payload: dict[str, Any] | None = None
    shard: Text | None = None
    priority: int | None = None
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    misfire: Misfire | None = None
    misfire_limit: Annotated[int, Field(ge=1, le=MAX_MISFIRE_LIMIT)] | None = None
    misfire_grace_seconds: Seconds | None = None
    overlap: Overlap | None = None
    expires_in_seconds: Positive | None = Field(None, description="a run must start this soon (default: until "
                                                                  "the next tick)")


class ScheduleCreate(_ScheduleOptions):
    """A new schedule: each tick of ``rule`` enqueues one job of ``kind``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "weekly-reminders", "kind": "dosage.alert", "payload": {"patient_id": 42},
         "rule": {"type": "weekly", "days": ["MO", "TH"], "at": "06:00", "tz": "Africa/Dar_es_Salaam"},
         "description": "twice a week"},
        {"name": "ten-checks", "kind": "dosage.alert", "payload": {"patient_id": 7},
         "rule": {"type": "every", "minutes": 15, "count": 10, "start": "2026-11-23T09:00:00+00:00"},
         "overlap": "allow", "expires_in_seconds": 600}]})

    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Annotated[str, Field(min_length=1, max_length=200)]
    rule: RuleSpec
    paused: bool = False


class ScheduleUpdate(_ScheduleOptions):
    """The options to change (only those given; null clears start, end, expires_in_seconds)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"description": "Mondays at six", "rule": {"type": "cron", "expr": "0 6 * * MON"}}]})

    kind: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    rule: RuleSpec | None = None


class Schedule(Model):
    name: str
    description: str
    kind: str
    payload: dict[str, Any]
    shard: str
    priority: int
    max_attempts: int
    rule: dict[str, Any] | None = Field(description="the rule as stored (a spec this API also takes)")
    rule_text: str = Field(description="the rule in words")
    timezone: str
    start: datetime | None
    end: datetime | None
    paused: bool
    misfire: str
    misfire_limit: int
    misfire_grace_seconds: float
    overlap: str
    expires_in_seconds: float | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_state: str | None
    last_outcome: str | None
    runs: int
    skipped: int
    fired: int
    runs_left: int | None = Field(description="null: unbounded; capped at 1000 (1000 means: at least)")
    status: Literal["active", "paused", "finished", "failed"]
    source: str
    error: str | None
    created_at: datetime
    updated_at: datetime


class ScheduleRun(Model):
    job_id: int
    fire_at: datetime | None
    state: str
    outcome: str | None = Field(description="success, idle, error or timeout once finished")
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None


class ScheduleDetail(Schedule):
    next_fires: list[datetime] = Field(description="the next 10 fire times")
    recent_runs: list[ScheduleRun]


class NextFires(Model):
    name: str
    next_fires: list[datetime]


class RunNow(Model):
    force: bool = Field(False, description="run even while a previous run is unfinished")


class RunStarted(Model):
    name: str
    job_id: int


class KindOnly(Model):
    kind: Text | None = Field(None, description="only the schedules of this job kind")


class Names(Model):
    names: list[str]
