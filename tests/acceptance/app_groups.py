"""A small app with groups for the acceptance tests of ``finejobs groups ...`` (its URL from
FINEJOBS_DATABASE_URL): ``item`` members that fail when told to (quoting a database URL with its password,
which no output may show), and ``report`` callbacks."""

from __future__ import annotations

import finejobs


def declare(queue: finejobs.Queue) -> finejobs.Queue:
    @queue.job("item", retry=finejobs.Retry(max_attempts=1))
    def item(payload: dict[str, object]) -> None:
        if payload.get("fail"):
            raise RuntimeError(f"item {payload.get('n')}: postgresql://svc:{payload.get('pw')}@db.example/x refused")

    @queue.job("report")
    def report(payload: dict[str, object]) -> None:
        return None

    return queue


queue = declare(finejobs.Queue())
