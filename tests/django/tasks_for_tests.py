"""Tasks for the contract tests (module level, as Django requires), on the default finejobs backend."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import finejobs
from finejobs.contrib.django import task

RAN: list[Any] = []
_lock = threading.Lock()


def ran(item: Any) -> None:
    with _lock:
        RAN.append(item)


@task()
def add(a: int, b: int) -> int:
    ran(("add", a, b))
    return a + b


@task(priority=10)
def echo(value: Any, *, label: str = "") -> dict[str, Any]:
    ran(("echo", label))
    return {"value": value, "label": label}


@task()
def nothing() -> None:
    ran("nothing")


@task()
def fails(message: str) -> None:
    raise ValueError(message)


class Custom(Exception):
    pass


@task()
def fails_custom() -> None:
    raise Custom("mine")


@task()
def returns_object() -> Any:
    return object()


@task()
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    ran(("async_add", a, b))
    return a + b


@task(takes_context=True, retry=finejobs.Retry(max_attempts=3, backoff=timedelta(seconds=0.1), jitter=timedelta(0)))
def flaky(context: Any, until: int) -> dict[str, Any]:
    if context.attempt < until:
        raise ConnectionError(f"attempt {context.attempt}")
    return {"attempt": context.attempt, "result_id": context.task_result.id}


@task(expires_in=timedelta(seconds=1), unique_key=lambda key: f"once:{key}")
def once(key: str) -> str:
    return key


@task(shard=lambda district, **_: f"district-{district}")
def by_district(district: int, note: str = "") -> int:
    return district


@task(timeout=timedelta(seconds=0.2))
async def slow() -> None:
    await asyncio.sleep(5)
