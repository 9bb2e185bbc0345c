"""How a finejobs worker runs a Django task: the job kind's handler calls the Task (sync tasks on the worker's
thread pool, async ones on its event loop), with Django's signals, database connections tidied as Django does
around a request, the TaskContext when the task takes one, and its return value made JSON (Django's rule: a
value JSON cannot keep fails the attempt, as in Django's own backends).

The job's payload is ``{"args": [...], "kwargs": {...}, "queue": "<queue_name>"}``; a schedule may give only
``kwargs`` (and ``args``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from finejobs.contrib.django.compat import (
    TaskContext,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from finejobs.contrib.django.results import task_result
from finejobs.jobs import JobContext
from finejobs.limits import MAX_RETURN_VALUE_BYTES
from finejobs.payloads import encode

HANDLER_MARK = "__finejobs_django_task__"


def arguments(payload: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The task's positional and keyword arguments from a job's payload (TypeError if malformed)."""
    unknown = set(payload) - {"args", "kwargs", "queue"}
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if unknown or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TypeError(f"a Django task's payload is {{'args': [...], 'kwargs': {{...}}}}; this one has "
                        f"{', '.join(sorted(map(str, payload))) or 'nothing'}")
    return args, kwargs


def _running(task: Any, ctx: JobContext, backend: str) -> Any:
    result = task_result(task, ctx.job, backend=backend)
    object.__setattr__(result, "status", TaskResultStatus.RUNNING)
    return result


def _returned(name: str, value: Any) -> Any:
    normal = normalize_json(value)
    if normal is not None:
        encode(name, normal, max_bytes=MAX_RETURN_VALUE_BYTES)  # PayloadError names what JSON cannot keep
    return normal


def _ended(result: Any, status: Any, backend: type[Any]) -> None:
    object.__setattr__(result, "status", status)
    task_finished.send(backend, task_result=result)


def make_handler(task: Any, backend_alias: str, backend: type[Any]) -> Callable[[dict[str, Any], JobContext], Any]:
    """The job kind's handler for ``task`` (an ``async def`` handler for an async task)."""
    name = task.module_path

    def call(ctx: JobContext, payload: dict[str, Any]) -> tuple[Any, list[Any], dict[str, Any]]:
        args, kwargs = arguments(payload)
        result = _running(task, ctx, backend_alias)
        if task.takes_context:
            args = [TaskContext(task_result=result), *args]
        return result, args, kwargs

    if _is_async(task):
        async def run_async(payload: dict[str, Any], ctx: JobContext) -> Any:
            result, args, kwargs = call(ctx, payload)
            await sync_to_async(close_old_connections)()
            await task_started.asend(backend, task_result=result)
            try:
                value = _returned(name, await task.acall(*args, **kwargs))
            except BaseException:
                await sync_to_async(_ended)(result, TaskResultStatus.FAILED, backend)
                raise
            finally:
                await sync_to_async(close_old_connections)()
            object.__setattr__(result, "_return_value", value)
            await sync_to_async(_ended)(result, TaskResultStatus.SUCCESSFUL, backend)
            return value

        handler: Callable[[dict[str, Any], JobContext], Any] = run_async
    else:
        def run(payload: dict[str, Any], ctx: JobContext) -> Any:
            close_old_connections()
            try:
                result, args, kwargs = call(ctx, payload)
                task_started.send(backend, task_result=result)
                try:
                    value = _returned(name, task.call(*args, **kwargs))
                except BaseException:
                    _ended(result, TaskResultStatus.FAILED, backend)
                    raise
                object.__setattr__(result, "_return_value", value)
                _ended(result, TaskResultStatus.SUCCESSFUL, backend)
                return value
            finally:
                close_old_connections()

        handler = run
    handler.__name__ = handler.__qualname__ = task.func.__name__
    handler.__module__ = task.func.__module__
    setattr(handler, HANDLER_MARK, task)
    return handler


def _is_async(task: Any) -> bool:
    return inspect.iscoroutinefunction(task.func)


def task_of(handler: Callable[..., Any] | Callable[..., Awaitable[Any]]) -> Any:
    """The Django Task a kind's handler runs, or None for a plain finejobs handler."""
    return getattr(handler, HANDLER_MARK, None)
