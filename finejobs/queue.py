"""The public entry point: a Queue holds the job kinds and the store; ``@queue.job`` declares a kind."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pydantic

from finejobs import tracing
from finejobs.clock import Clock, utcnow
from finejobs.errors import (
    ConfigurationError,
    FinejobsError,
    InvalidJobOptions,
    JobNotFound,
    UnknownKindError,
)
from finejobs.jobs import Job, JobState
from finejobs.kinds import JobKind, JobSpec, P, R, _payload_model
from finejobs.limits import (
    MAX_MESSAGE_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_UNIQUE_KEY_BYTES,
    add_time,
    check_duration,
    check_int,
    check_text,
    check_time,
)
from finejobs.payloads import encode as encode_payload
from finejobs.retry import Retry
from finejobs.schedule_ops import Schedules
from finejobs.scheduler import LocalSchedule, ScheduleSpec, make_local, make_spec
from finejobs.schedules import Rule
from finejobs.sharding import ShardMap, ShardRule, rule_from_options, validate_shard_name
from finejobs.store import (
    JobStore,
    NewJob,
    Stats,
    UserConnection,
    connection_database_id,
    mask_url,
    normalize_url,
)

if TYPE_CHECKING:
    from finejobs.groups import CallbackLike, Group
    from finejobs.importing import ImportResult
    from finejobs.pipelines import Pipeline
    from finejobs.runtime.worker import Worker
    from finejobs.runtime.worker_group import WorkerGroup

SHARD_MAP_ENV = "FINEJOBS_SHARD_MAP"

DEFAULT_MAX_PAYLOAD_BYTES = MAX_PAYLOAD_BYTES
_PRIORITY_RANGE = range(-32768, 32768)


class Queue:
    """Job kinds plus the database (or, with a shard map, the databases) that hold their jobs.

    ``url`` defaults to the environment variable FINEJOBS_DATABASE_URL. ``shard_map`` (a ShardMap, or the
    path of a TOML shard map; default: the file named by FINEJOBS_SHARD_MAP) places shards on several
    databases instead. Nothing connects until first use.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        shard_map: ShardMap | str | os.PathLike[str] | None = None,
        pool_size: int = 5,
        clock: Clock = utcnow,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if url is not None and shard_map is not None:
            raise ConfigurationError("pass url or shard_map, not both (the shard map names every database)")
        self._url = url
        self._shard_map = _load_map(shard_map)
        self._resolved_map: ShardMap | None = None
        self._pool_size = pool_size
        self._stores: dict[str, JobStore] = {}
        self._database_ids: dict[str, str] = {}
        self._lock = threading.Lock()
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.kinds: dict[str, JobKind[Any, Any]] = {}
        self.declared_schedules: dict[str, ScheduleSpec] = {}  # upserted at worker start
        self.local_schedules: dict[str, LocalSchedule] = {}  # run in every worker process, never stored

    # ---------------------------------------------------------------- configuration

    @property
    def shard_map(self) -> ShardMap:
        """Where shards live: the configured map, else one database (the URL) holding every shard.
        Read once (the environment too) until ``configure()`` or ``close()``."""
        with self._lock:
            if self._resolved_map is None:
                if self._shard_map is not None:
                    self._resolved_map = self._shard_map
                elif self._url is None and os.environ.get(SHARD_MAP_ENV):
                    self._resolved_map = ShardMap.from_toml(os.environ[SHARD_MAP_ENV])
                else:
                    url = self._single_url()
                    normalize_url(url)  # a clear "not a PostgreSQL URL" error
                    self._resolved_map = ShardMap.single(url)
            return self._resolved_map

    @property
    def url(self) -> str:
        """The URL of the default database (the only one without a shard map)."""
        shard_map = self.shard_map
        return shard_map.url(shard_map.default)

    def _single_url(self) -> str:
        url = self._url or os.environ.get("FINEJOBS_DATABASE_URL")
        if not url:
            raise ConfigurationError(
                "no database URL: pass finejobs.Queue(url) or set FINEJOBS_DATABASE_URL "
                f"(or a shard map: Queue(shard_map=...) or {SHARD_MAP_ENV})"
            )
        return url

    def configure(self, *, url: str | None = None, pool_size: int | None = None,
                  shard_map: ShardMap | str | os.PathLike[str] | None = None) -> None:
        """Change the database URL, the shard map or the pool size (the CLI's --database-url, --shard-map and
        --pool-size do this). A URL replaces a shard map and the other way round."""
        if url is not None and shard_map is not None:
            raise ConfigurationError("pass url or shard_map, not both (the shard map names every database)")
        new_map = _load_map(shard_map)
        self.close()
        with self._lock:
            if url is not None:
                self._url, self._shard_map = url, None
            if new_map is not None:
                self._url, self._shard_map = None, new_map
            if pool_size is not None:
                self._pool_size = pool_size

    @property
    def store(self) -> JobStore:
        """The store of the default database (the only one without a shard map)."""
        return self.store_of(self.shard_map.default)

    def store_of(self, database: str) -> JobStore:
        """The store of one database of the shard map (each has its own connection pool)."""
        store = self._stores.get(database)
        if store is not None:
            return store
        url = self.shard_map.url(database)
        with self._lock:
            store = self._stores.get(database)
            if store is None:
                store = self._stores[database] = JobStore.from_url(url, pool_size=self._pool_size)
            return store

    def store_for(self, shard: str) -> JobStore:
        """The store of the database that holds ``shard``."""
        return self.store_of(self.shard_map.database_for(shard))

    @property
    def databases(self) -> list[str]:
        """The databases of the shard map, in declared order (["default"] without one)."""
        return self.shard_map.names

    def close(self) -> None:
        """Release the connection pools."""
        with self._lock:
            stores, self._stores = self._stores, {}
            self._database_ids.clear()
            self._resolved_map = None
        for store in stores.values():
            store.dispose()

    def migrate(self) -> list[int]:
        """Create or upgrade the finejobs tables in every database; returns the versions applied (in any)."""
        applied = self.migrate_each()
        return sorted({version for versions in applied.values() for version in versions})

    def migrate_each(self) -> dict[str, list[int]]:
        """Migrate every database of the shard map; returns the versions applied per database."""
        return {name: self.store_of(name).migrate() for name in self.databases}

    # ---------------------------------------------------------------- job kinds

    def job(
        self,
        name: str,
        *,
        retry: Retry | None = None,
        expires_in: timedelta | None = None,
        timeout: timedelta | None = None,
        priority: int = 0,
        model: type[pydantic.BaseModel] | None = None,
        schedule: Rule | None = None,
        shard: str | None = None,
        shard_by: str | ShardRule | None = None,
        shard_by_hash: tuple[str, int] | None = None,
    ) -> Callable[[Callable[P, R]], JobKind[P, R]]:
        """Declare a job kind. The payload model comes from the handler's first parameter's annotation.

        ``schedule=`` (a rule: Cron, Every, ...) also declares a schedule named after the kind, with an
        empty payload; use ``queue.schedule(...)`` for a payload or other options.

        Routing (where a job goes when ``enqueue`` names no shard): ``shard="alerts"`` puts every job of
        the kind in one shard; ``shard_by="district"`` takes it from a payload field ({"district": 3} ->
        "district-3"); ``shard_by_hash=("patient_id", 16)`` hashes a payload field into 16 buckets
        ("patient-00" .. "patient-15", blake2b: the same on every machine). At most one of the three.
        """
        rule = rule_from_options(shard_by, shard_by_hash)
        if shard is not None and rule is not None:
            raise InvalidJobOptions("pass shard (a fixed shard) or a routing rule (shard_by, shard_by_hash), not both")
        if shard is not None:
            validate_shard_name(shard)
        check_text("job kind name", name, max_chars=200)
        check_int("priority", priority, _PRIORITY_RANGE.start, _PRIORITY_RANGE.stop - 1)
        expires_in = check_duration("expires_in", expires_in)
        timeout = check_duration("timeout", timeout)

        def register(handler: Callable[P, R]) -> JobKind[P, R]:
            if name in self.kinds:
                raise InvalidJobOptions(f"job kind {name!r} is already registered")
            kind = JobKind(self, name, handler, model=model or _payload_model(handler),
                           retry=retry or Retry(), expires_in=expires_in, timeout=timeout, priority=priority,
                           shard=shard, shard_rule=rule)
            self.kinds[name] = kind
            if schedule is not None:
                try:
                    self.schedule(name, kind, schedule)
                except BaseException:
                    del self.kinds[name]
                    raise
            return kind

        return register

    # ---------------------------------------------------------------- schedules

    def schedule(self, name: str, kind: str | JobKind[Any, Any], rule: Rule, *, payload: Any = None,
                 **options: Any) -> ScheduleSpec:
        """Declare a recurring schedule in code; every worker upserts it when it starts.

        ``queue.schedule("policy-renewals", renew_policies, Cron("0 6 * * MON", tz=...), payload={...})``.
        Options: description, shard, priority, max_attempts, start, end, misfire ("coalesce", "all",
        "skip"), misfire_limit, misfire_grace, overlap ("skip", "allow", "wait"), expires_in.
        See docs/schedules.md. For a schedule run by every worker process, see ``local_schedule``.
        """
        if options.pop("local", False):
            raise InvalidJobOptions(f"schedule {name!r}: for a schedule run in every worker process, call "
                                    "queue.local_schedule(name, kind_or_callable, rule, ...)")
        if name in self.declared_schedules or name in self.local_schedules:
            raise InvalidJobOptions(f"schedule {name!r} is already declared")
        spec = make_spec(self, name, kind, rule, payload=payload, **options)
        self.declared_schedules[name] = spec
        return spec

    def local_schedule(self, name: str, target: str | JobKind[Any, Any] | Callable[[], Any], rule: Rule, *,
                       payload: Any = None, description: str = "", start: datetime | None = None,
                       end: datetime | None = None) -> LocalSchedule:
        """Declare a local schedule, run by every worker process on its own, in the process, on ``rule``:
        ``queue.local_schedule("cache-expiry", cache.expire, Every(seconds=30))``. ``target``: a callable taking
        no arguments, or a job kind (or its name) whose handler gets ``payload``. No row, no job: N processes
        make N calls per tick; a tick that comes while the previous call runs is skipped (logged); errors are
        logged, never the worker's end. See docs/services.md, "Local schedules"."""
        if name in self.declared_schedules or name in self.local_schedules:
            raise InvalidJobOptions(f"schedule {name!r} is already declared")
        spec = make_local(self, name, target, rule, payload=payload, description=description, start=start, end=end)
        self.local_schedules[name] = spec
        return spec

    def http_service(self, name: str, **options: Any) -> ScheduleSpec:
        """Declare an external HTTP service (Linkcare's daemon; docs/services.md): a schedule named
        ``service:<name>`` whose job POSTs ``parameters`` as JSON to ``endpoint`` and maps the reply's code
        (success, idle, error) or a timeout to the run's outcome. Options: endpoint, plan (an
        ``execution_plan`` mapping), parameters, timeout, allow_concurrency, description."""
        from finejobs.services import http_service

        return http_service(self, name, **options)

    @property
    def schedules(self) -> Schedules:
        """Schedule operations on the database: list, get, add, update, delete, pause, run_now..."""
        return Schedules(self)

    def kind(self, name: str) -> JobKind[Any, Any]:
        try:
            return self.kinds[name]
        except KeyError:
            known = ", ".join(sorted(self.kinds)) or "none"
            raise UnknownKindError(f"unknown job kind {name!r} (registered: {known})") from None

    # ---------------------------------------------------------------- enqueue and read

    def enqueue(self, kind: str, payload: Any, **options: Any) -> Job:
        """Enqueue by kind name: ``queue.enqueue("dosage.alert", {...}, shard=...)``."""
        return self.kind(kind).enqueue(payload, **options)

    def enqueue_many(self, kind: str, items: Iterable[Any], **options: Any) -> list[Job]:
        return self.kind(kind).enqueue_many(items, **options)

    # ---------------------------------------------------------------- groups

    def group(self, name: str, *, on_complete: CallbackLike | None = None, on_success: CallbackLike | None = None,
              on_failure: CallbackLike | None = None, database: str | None = None) -> Group:
        """The group named ``name`` (made now if there is none; an existing group keeps its callbacks).

        Jobs join it through ``group.enqueue(...)``, ``group.enqueue_many(...)`` or ``enqueue(..., group=g)``
        until ``group.seal()`` (a ``with`` block seals it at its end). Once sealed and all its members are
        done it finishes: ``on_complete`` runs, and ``on_success`` if every member succeeded, else
        ``on_failure``: each a job kind, a ``(kind, payload)`` pair or a ``finejobs.Callback``, enqueued
        exactly once. See docs/pipelines.md."""
        from finejobs.groups import make_group

        return make_group(self, name, on_complete=on_complete, on_success=on_success, on_failure=on_failure,
                          database=database)

    def pipeline(self, name: str, **options: Any) -> Pipeline:
        """Declare a step pipeline (``@p.step(...)``, ``@p.reduce()``, ``p.start(params)``); options:
        chunk_size, shard, on_chunk_failure ("fail" or "skip"), priority. See finejobs.pipelines and
        docs/pipelines.md."""
        from finejobs.pipelines import pipeline

        return pipeline(self, name, **options)

    def find_group(self, name: str, *, database: str | None = None) -> Group:
        """The existing group named ``name``; raises GroupNotFound."""
        from finejobs.groups import find_group

        return find_group(self, name, database=database)

    def import_(self, kind: str | JobKind[Any, Any], items: Iterable[Any], **options: Any) -> ImportResult:
        """Validate many new jobs and load them with COPY in one transaction, streamed (constant memory):
        a million rows of a CSV file become a million jobs, or none if one is invalid. Options: group,
        shard, run_at, expires_at, priority, conn, on_progress, batch (finejobs.importing.import_jobs)."""
        from finejobs.importing import import_jobs

        return import_jobs(self, kind, items, **options)

    def get(self, job_id: int, *, database: str | None = None) -> Job:
        """The job with this id. With a shard map, ids are per database: name it, or the one holding it is
        found (an id found in several databases is refused as ambiguous)."""
        return self._locate(job_id, database).job_get(job_id=job_id, now=self.clock())

    def jobs(self, *, state: JobState | str | None = None, kind: str | None = None,
             shard: str | None = None, limit: int = 50) -> list[Job]:
        """The newest jobs first (across every database of the shard map), filtered."""
        stores = [self.store_for(shard)] if shard is not None else [self.store_of(n) for n in self.databases]
        found = [job for store in stores
                 for job in store.job_list(now=self.clock(), state=JobState(state) if state else None, kind=kind,
                                           shard=shard, limit=limit)]
        if len(stores) > 1:
            found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[:limit]

    def cancel(self, job_id: int, reason: str = "cancelled by operator", *, database: str | None = None) -> Job:
        check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        return self._locate(job_id, database).job_cancel(job_id=job_id, now=self.clock(), reason=reason)

    def retry(self, job_id: int, *, database: str | None = None) -> Job:
        return self._locate(job_id, database).job_retry(job_id=job_id, now=self.clock())

    def stats(self) -> Stats:
        """Job counts by state, kind and shard, summed over every database of the shard map."""
        return Stats.combine([self.store_of(name).job_stats(now=self.clock()) for name in self.databases])

    def worker(self, **options: Any) -> Worker | WorkerGroup:
        """A Worker for this queue (see finejobs.Worker for the options).

        With a shard map whose databases hold the shards served (``shards=``, default all), a WorkerGroup:
        one Worker per database, each connected to its database only.
        """
        from finejobs.runtime.worker import Worker
        from finejobs.runtime.worker_group import WorkerGroup

        if "database" in options:
            return Worker(self, **options)
        databases = self.shard_map.databases_for(options.get("shards") or None)
        if len(databases) == 1:
            return Worker(self, database=databases[0], **options)
        return WorkerGroup(self, databases=databases, **options)

    def _locate(self, job_id: int, database: str | None) -> JobStore:
        if database is not None or len(self.databases) == 1:
            return self.store_of(database or self.shard_map.default)
        holders = [name for name in self.databases if self.store_of(name).job_exists(job_id=job_id)]
        if len(holders) > 1:
            raise FinejobsError(f"job id {job_id} exists in databases {', '.join(holders)}: name one "
                                "(--database NAME)")
        if not holders:
            raise JobNotFound(f"no job with id {job_id} in databases {', '.join(self.databases)}")
        return self.store_of(holders[0])

    # ---------------------------------------------------------------- internals

    def _insert(self, pairs: list[tuple[JobKind[Any, Any], JobSpec]], *, conn: UserConnection | None,
                group: Group | None = None) -> list[Job]:
        """Validate everything first (nothing is written if one job is invalid), then insert: one statement
        per database the jobs' shards live in. With tracing on, inside an enqueue span whose context each
        job stores (finejobs.tracing)."""
        if tracing.is_enabled():
            return tracing.enqueue([kind.name for kind, _ in pairs], len(pairs),
                                   lambda trace: self._insert_jobs(pairs, conn=conn, trace=trace, group=group))
        return self._insert_jobs(pairs, conn=conn, trace=None, group=group)

    def _insert_jobs(self, pairs: list[tuple[JobKind[Any, Any], JobSpec]], *, conn: UserConnection | None,
                     trace: dict[str, str] | None, group: Group | None = None) -> list[Job]:
        now = self.clock()
        rows = [self._new_job(kind, spec, now, trace, group) for kind, spec in pairs]
        shard_map = self.shard_map
        by_database: dict[str, list[int]] = {}
        if len(shard_map.names) == 1:
            by_database[shard_map.default] = list(range(len(rows)))
        else:
            for i, row in enumerate(rows):
                by_database.setdefault(shard_map.database_for(row.shard), []).append(i)
        if conn is not None:
            return self._insert_on(conn, rows, by_database, now)
        result: list[Job | None] = [None] * len(rows)
        for database, indexes in by_database.items():
            stored = self.store_of(database).job_insert_many([rows[i] for i in indexes], now=now)
            for i, job in zip(indexes, stored, strict=True):
                result[i] = job
        return [job for job in result if job is not None]

    def _insert_on(self, conn: UserConnection, rows: list[NewJob], by_database: dict[str, list[int]],
                   now: datetime) -> list[Job]:
        """Insert in the caller's transaction: every job's shard must live in the database ``conn`` is on (with
        or without a shard map: a job written to another database than the queue's would never be seen)."""
        if len(by_database) > 1:
            places = "; ".join(f"{', '.join(sorted({rows[i].shard for i in idx}))} in database {db!r}"
                               for db, idx in by_database.items())
            raise InvalidJobOptions(f"conn= is one transaction on one database, but these jobs' shards live in "
                                    f"several: {places}. Enqueue them in one transaction per database, "
                                    "or without conn=")
        database = next(iter(by_database))
        on = connection_database_id(conn)
        if on != self._database_id(database):
            if len(self.databases) == 1:
                raise InvalidJobOptions(
                    f"conn is a connection to another database than the queue's "
                    f"({mask_url(self.shard_map.url(database))}): enqueue in a transaction on that database, "
                    "or without conn="
                )
            here = next((n for n in self.databases if self._database_id(n) == on), None)
            shards = ", ".join(sorted({r.shard for r in rows}))
            raise InvalidJobOptions(
                f"shard {shards} lives in database {database!r} ({mask_url(self.shard_map.url(database))}), "
                f"but conn is a connection to {repr(here) if here else 'a database outside the shard map'}: "
                f"enqueue it in a transaction on database {database!r}, or without conn="
            )
        return self.store_of(database).job_insert_many(rows, now=now, conn=conn)

    def _database_id(self, database: str) -> str:
        with self._lock:
            known = self._database_ids.get(database)
        if known is None:
            known = self.store_of(database).database_id()
            with self._lock:
                self._database_ids[database] = known
        return known

    def _new_job(self, kind: JobKind[Any, Any], spec: JobSpec, now: datetime,
                 trace: dict[str, str] | None = None, group: Group | None = None) -> NewJob:
        payload = kind.validate(spec.payload)
        payload_json = encode_payload(kind.name, payload, max_bytes=self.max_payload_bytes)
        run_at = check_time("run_at", spec.run_at) or now
        expires_at = check_time("expires_at", spec.expires_at)
        if expires_at is None and kind.expires_in is not None:
            expires_at = add_time("expires_in", run_at, kind.expires_in)
        if expires_at is not None and expires_at <= run_at:
            raise InvalidJobOptions(f"expires_at ({expires_at.isoformat()}) must be after run_at "
                                    f"({run_at.isoformat()})")
        priority = kind.priority if spec.priority is None else spec.priority
        check_int("priority", priority, _PRIORITY_RANGE.start, _PRIORITY_RANGE.stop - 1)
        if spec.unique_key is not None:
            check_text("unique_key", spec.unique_key, max_bytes=MAX_UNIQUE_KEY_BYTES)
        shard = validate_shard_name(kind.shard_for(payload) if spec.shard is None else spec.shard)
        if group is not None:
            if group.queue is not self:
                raise InvalidJobOptions(f"group {group.name!r} belongs to another queue")
            if self.shard_map.database_for(shard) != group.database:
                raise InvalidJobOptions(
                    f"shard {shard!r} lives in database {self.shard_map.database_for(shard)!r}, but group "
                    f"{group.name!r} lives in {group.database!r}: a group's members live in its database")
        return NewJob(
            kind=kind.name,
            payload=payload,
            payload_json=payload_json,
            shard=shard,
            priority=priority,
            run_at=run_at,
            expires_at=expires_at,
            max_attempts=kind.retry.max_attempts,
            unique_key=spec.unique_key,
            trace=trace,
            group_id=None if group is None else group.id,
        )


def _load_map(value: ShardMap | str | os.PathLike[str] | None) -> ShardMap | None:
    if value is None or isinstance(value, ShardMap):
        return value
    return ShardMap.from_toml(value)


