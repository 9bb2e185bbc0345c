"""``FinejobsBackend``: a ``django.tasks`` backend (Django 6, or the django-tasks backport on Django 5.2) that
stores each enqueued task as one finejobs job, run by finejobs workers (``manage.py finejobs_worker``).

```python
TASKS = {"default": {"BACKEND": "finejobs.contrib.django.FinejobsBackend", "QUEUES": ["default", "renewals"],
                     "OPTIONS": {"QUEUE_SHARDS": {"renewals": "renewals"}}}}

@task(queue_name="renewals", retry=finejobs.Retry(max_attempts=5), expires_in=timedelta(days=2),
      unique_key=lambda policy_id: f"renew:{policy_id}")    # finejobs.contrib.django.task, or Django 6.1's
def renew_policy(policy_id: int) -> dict[str, int]: ...

with transaction.atomic():                    # the job exists if and only if this transaction commits
    policy.save()
    result = renew_policy.enqueue(policy.id)
```

Each task is a finejobs job kind named after the task's module path. See docs/django.md.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core import checks
from django.db import connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from finejobs.contrib.django.compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    DEFAULT_TASK_PRIORITY,
    DEFAULT_TASK_QUEUE_NAME,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResultDoesNotExist,
    normalize_json,
    task_backends,
    task_enqueued,
)
from finejobs.contrib.django.config import Options, alias_url, queue_for
from finejobs.contrib.django.results import task_result
from finejobs.contrib.django.running import make_handler, task_of
from finejobs.errors import FinejobsError, InvalidJobOptions, JobNotFound, PayloadError
from finejobs.jobs import Job, JobState
from finejobs.kinds import JobKind
from finejobs.limits import MAX_UNIQUE_KEY_BYTES, check_duration, check_text, check_time
from finejobs.payloads import encode
from finejobs.queue import Queue
from finejobs.retry import Retry
from finejobs.scheduler import ScheduleSpec
from finejobs.schedules import Rule
from finejobs.sharding import validate_shard_name

ONE_ATTEMPT = Retry(max_attempts=1)  # Django's semantics: a task that raises is FAILED (unless it names a Retry)
_register = threading.Lock()


@dataclass(frozen=True, slots=True, kw_only=True)
class FinejobsTask(Task):  # type: ignore[misc]
    """A Django Task with finejobs' options: the retry policy, how long it may wait to start (``expires_in``),
    how long an attempt may run (``timeout``), a unique key and the shard (each a string, or a function of the
    task's arguments that returns one). Django 6.1 and the backport pass them from ``@task(...)``;
    ``finejobs.contrib.django.task`` does on every version."""

    retry: Retry | None = None
    expires_in: timedelta | None = None
    timeout: timedelta | None = None
    unique_key: str | Callable[..., str] | None = None
    shard: str | Callable[..., str] | None = None
    expires_at: datetime | None = None  # one job's deadline to start (set with .using(expires_at=...))

    def using(self, *, priority: int | None = None, queue_name: str | None = None,
              run_after: datetime | None = None, backend: str | None = None,
              unique_key: str | Callable[..., str] | None = None, shard: str | Callable[..., str] | None = None,
              expires_at: datetime | None = None) -> FinejobsTask:
        """A copy with other defaults: Django's (priority, queue_name, run_after, backend), and the job's unique
        key, shard and expires_at (the time it must start by). The retry policy, expires_in and timeout belong
        to the task's declaration."""
        changed: FinejobsTask = Task.using(self, priority=priority, queue_name=queue_name, run_after=run_after,
                                           backend=backend)
        extra = {k: v for k, v in (("unique_key", unique_key), ("shard", shard), ("expires_at", expires_at))
                 if v is not None}
        return _replace(changed, **extra) if extra else changed


def _replace(task: FinejobsTask, **changes: Any) -> FinejobsTask:
    return dataclasses.replace(task, **changes)


def task(function: Callable[..., Any] | None = None, *, priority: int = DEFAULT_TASK_PRIORITY,
         queue_name: str = DEFAULT_TASK_QUEUE_NAME, backend: str = DEFAULT_TASK_BACKEND_ALIAS,
         takes_context: bool = False, **options: Any) -> Any:
    """Django's ``@task`` with finejobs' options (retry, expires_in, timeout, unique_key, shard), on every Django
    version (Django 6.0's own ``@task`` takes no extra arguments; 6.1's and the backport's pass them on)."""
    if "run_after" in options:
        raise TypeError("run_after cannot be set by the decorator: use .using(run_after=...)")

    def wrapper(func: Callable[..., Any]) -> Any:
        cls = task_backends[backend].task_class
        if options and not (isinstance(cls, type) and issubclass(cls, FinejobsTask)):
            raise InvalidTask(f"{', '.join(sorted(options))}: the task backend {backend!r} is not finejobs'")
        return cls(priority=priority, func=func, queue_name=queue_name, backend=backend,
                   takes_context=takes_context, run_after=None, **options)

    return wrapper(function) if function is not None else wrapper


class FinejobsBackend(BaseTaskBackend):  # type: ignore[misc]
    """Tasks as finejobs jobs. OPTIONS: see finejobs.contrib.django.config (and docs/django.md)."""

    task_class = FinejobsTask
    supports_defer = True
    supports_priority = True
    supports_async_task = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.settings = Options.parse(alias, self.options)

    @property
    def queue(self) -> Queue:
        """The finejobs.Queue holding this backend's tasks (one per place of the tables, per process)."""
        return queue_for(self.settings)

    # ---------------------------------------------------------------- tasks as job kinds

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        retry, expires_in, timeout = (getattr(task, name, None) for name in ("retry", "expires_in", "timeout"))
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidTask(f"retry must be a finejobs.Retry, got {type(retry).__name__}")
        try:
            check_duration("expires_in", expires_in)
            check_duration("timeout", timeout)
        except FinejobsError as exc:
            raise InvalidTask(str(exc)) from None
        for name in ("unique_key", "shard"):
            value = getattr(task, name, None)
            if value is not None and not (isinstance(value, str) or callable(value)):
                raise InvalidTask(f"{name} must be a string or a function of the task's arguments, "
                                  f"got {type(value).__name__}")
        if isinstance(getattr(task, "shard", None), str):
            self._check_shard(task.shard, f"shard of task {task.module_path}")
        self._check_shard(self.shard_of_queue(task.queue_name), f"queue {task.queue_name!r}")
        self.kind_of(task)

    def shard_of_queue(self, queue_name: str) -> str:
        """The shard of a queue's jobs: OPTIONS['QUEUE_SHARDS'][queue_name], else the queue's own name."""
        return self.settings.queue_shards.get(queue_name, queue_name)

    @staticmethod
    def _check_shard(shard: str, what: str) -> None:
        try:
            validate_shard_name(shard)
        except FinejobsError as exc:
            raise InvalidTask(f"{what}: {exc} (map the queue to a shard with OPTIONS['QUEUE_SHARDS'])") from None

    def kind_of(self, task: Any) -> JobKind[Any, Any]:
        """The job kind of a task (declared on first sight; the first declaration's options stay)."""
        queue, name = self.queue, task.module_path
        with _register:
            kind = queue.kinds.get(name)
            if kind is None:
                handler = make_handler(task, self.alias, type(self))
                retry = getattr(task, "retry", None) or self.settings.retry or ONE_ATTEMPT
                kind = queue.job(name, retry=retry, expires_in=getattr(task, "expires_in", None),
                                 timeout=getattr(task, "timeout", None))(handler)
            elif task_of(kind.handler) is None:
                raise InvalidTask(f"the finejobs queue already has a job kind {name!r} that is not this task")
        return kind

    # ---------------------------------------------------------------- enqueue

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        kind = self.kind_of(task)
        payload = {**_arguments(kind.name, args, kwargs), "queue": task.queue_name}
        options = self._job_options(task, args, kwargs)
        how, where = self._route()
        if how == "on_commit":
            return self._enqueue_on_commit(task, kind, payload, options, where)
        job = kind.enqueue(payload, conn=where, **options)
        result = task_result(task, job, backend=self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def _job_options(self, task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
        run_at = task.run_after
        if run_at is not None and timezone.is_naive(run_at):  # USE_TZ = False: in the current time zone
            run_at = timezone.make_aware(run_at, timezone.get_current_timezone())
        shard = _given(getattr(task, "shard", None), args, kwargs, "shard") or self.shard_of_queue(task.queue_name)
        return {"shard": shard, "run_at": run_at, "priority": task.priority,
                "expires_at": getattr(task, "expires_at", None),
                "unique_key": _given(getattr(task, "unique_key", None), args, kwargs, "unique_key")}

    def _route(self) -> tuple[str, Any]:
        """How to write a job now: ("conn", Django's psycopg connection) when the tables are in DATABASE's
        database and Django can lend its connection (inside the caller's transaction, or in autocommit);
        ("on_commit", alias) when the caller's transaction is on a database the job cannot be written in;
        ("now", None) on finejobs' own connections."""
        options = self.settings
        wrapper = connections[options.database] if options.database is not None else None
        usable = wrapper is not None and wrapper.vendor == "postgresql" and _psycopg3()
        if wrapper is not None and wrapper.in_atomic_block:
            return ("conn", _raw(wrapper)) if usable else ("on_commit", options.database)
        if options.app_database != options.database and connections[options.app_database].in_atomic_block:
            return "on_commit", options.app_database
        return ("conn", _raw(wrapper)) if usable else ("now", None)

    def _enqueue_on_commit(self, task: Any, kind: JobKind[Any, Any], payload: dict[str, Any],
                           options: dict[str, Any], alias: str) -> Any:
        """The caller is in a transaction on ``alias``, where the job cannot be written: check everything now,
        write the job when (and if) that transaction commits. The TaskResult's id is '' until then."""
        _check_now(self.queue, kind, payload, options)
        placeholder = Job(id=0, kind=kind.name, shard=options["shard"], payload=payload,
                          state=_waiting(options["run_at"]), priority=options["priority"],
                          run_at=options["run_at"] or timezone.now(), expires_at=options["expires_at"], attempt=0,
                          max_attempts=kind.retry.max_attempts,
                          unique_key=options["unique_key"], lease_owner=None, lease_expires_at=None, errors=(),
                          created_at=timezone.now(), started_at=None, finished_at=None)
        result = task_result(task, placeholder, backend=self.alias)
        object.__setattr__(result, "id", "")
        object.__setattr__(result, "enqueued_at", None)

        def write() -> None:
            job = kind.enqueue(payload, **options)
            object.__setattr__(result, "id", str(job.id))
            object.__setattr__(result, "enqueued_at", job.created_at)
            task_enqueued.send(type(self), task_result=result)

        transaction.on_commit(write, using=alias)
        return result

    # ---------------------------------------------------------------- results

    def get_result(self, result_id: Any) -> Any:
        text = str(result_id)
        if not (text.isascii() and text.isdigit()) or not 0 < int(text[:20]) < 2**63:
            raise TaskResultDoesNotExist(f"no task result {text[:40]!r} (finejobs ids are whole numbers)")
        try:
            job = self.queue.get(int(text))
        except JobNotFound:
            raise TaskResultDoesNotExist(f"no task result {text}") from None
        task = self.task_named(job.kind)
        if task is None:
            raise TaskResultDoesNotExist(f"job {text} is a finejobs job of kind {job.kind!r}, not a Django task")
        queue_name = job.payload.get("queue")
        task = task.using(priority=max(-100, min(100, job.priority)),
                          queue_name=queue_name if isinstance(queue_name, str) and queue_name in self.queues else None)
        return task_result(task, job, backend=self.alias)

    def task_named(self, kind_name: str) -> Any:
        """The Django Task of a job kind: the one this process declared, else imported by its module path."""
        kind = self.queue.kinds.get(kind_name)
        found = task_of(kind.handler) if kind is not None else None
        if found is None:
            try:
                found = import_string(kind_name)
            except ImportError:
                return None
        return found if isinstance(found, Task) else None

    def check(self, **kwargs: Any) -> list[Any]:
        problems = []
        if self.settings.database is not None:
            try:
                alias_url(self.settings.database)
            except FinejobsError as exc:
                problems.append(checks.Error(str(exc), id="finejobs.E001"))
        try:
            self.queue  # noqa: B018  (QUEUE imports)
        except FinejobsError as exc:
            problems.append(checks.Error(str(exc), id="finejobs.E002"))
        return problems


def schedule(name: str, task: Any, rule: Rule, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
             **options: Any) -> ScheduleSpec:
    """Declare a finejobs schedule whose ticks enqueue ``task`` (with ``args`` and ``kwargs``): upserted when a
    worker starts, like ``queue.schedule``. Options as for ``queue.schedule`` (description, shard, misfire,
    overlap, expires_in, ...); the shard defaults to the task's queue's. Declaring the same name again in the
    same process returns the first declaration."""
    backend = task.get_backend()
    if not isinstance(backend, FinejobsBackend):
        raise InvalidTask(f"the task {task.module_path} does not use a finejobs backend")
    queue = backend.queue
    if name in queue.declared_schedules:
        return queue.declared_schedules[name]
    kind = backend.kind_of(task)
    payload = {**_arguments(kind.name, args, kwargs or {}), "queue": task.queue_name}
    fixed = getattr(task, "shard", None)
    options.setdefault("shard", fixed if isinstance(fixed, str) else backend.shard_of_queue(task.queue_name))
    options.setdefault("priority", task.priority)
    return queue.schedule(name, kind, rule, payload=payload, **options)


def _arguments(kind: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Django's rule: arguments are JSON (tuples become lists, bytes text). Every argument that is not is
    named, and nothing is written; what jsonb cannot keep (NUL, NaN, ...) finejobs refuses at enqueue."""
    items = [(f"args.{i}", v) for i, v in enumerate(args)] + [(f"kwargs.{k}", v) for k, v in kwargs.items()]
    bad: list[tuple[str, str]] = []
    for path, item in items:
        try:
            normalize_json(item)
        except (TypeError, ValueError) as exc:
            bad.append((path, f"{type(item).__name__} is not JSON ({exc})"))
    if bad:
        raise PayloadError(kind, [path for path, _ in bad], "task arguments must be JSON: " +
                           "; ".join(f"{path}: {why}" for path, why in bad))
    return {"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))}


def _given(value: Any, args: Any, kwargs: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    made = value(*args, **kwargs)
    if not isinstance(made, str):
        raise InvalidTask(f"the {name} function returned {type(made).__name__}, not a string")
    return made


def _check_now(queue: Queue, kind: JobKind[Any, Any], payload: dict[str, Any], options: dict[str, Any]) -> None:
    """What enqueue would refuse, refused before the caller's transaction commits (nothing written then)."""
    encode(kind.name, kind.validate(payload), max_bytes=queue.max_payload_bytes)
    validate_shard_name(options["shard"])
    run_at, expires_at = check_time("run_at", options["run_at"]), check_time("expires_at", options["expires_at"])
    if expires_at is not None and expires_at <= (run_at or timezone.now()):
        raise InvalidJobOptions(f"expires_at ({expires_at.isoformat()}) must be after run_at")
    if options["unique_key"] is not None:
        check_text("unique_key", options["unique_key"], max_bytes=MAX_UNIQUE_KEY_BYTES)


def _waiting(run_at: datetime | None) -> JobState:
    return JobState.SCHEDULED if run_at is not None and run_at > timezone.now() else JobState.AVAILABLE


def _raw(wrapper: Any) -> Any:
    wrapper.ensure_connection()
    return wrapper.connection


def _psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)

