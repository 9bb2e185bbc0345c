"""A small pipeline app for the acceptance tests of ``finejobs pipelines ...`` (its URL from
FINEJOBS_DATABASE_URL): "export" fetches ``n`` ids, expands each chunk of 5 (the chunk of ids 5-9 fails, and is
skipped), writes them (streaming), and a reduction counts them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import finejobs
from finejobs.pipelines import Pipeline, StepContext, pipeline


def declare(queue: finejobs.Queue) -> Pipeline:
    export = pipeline(queue, "export", chunk_size=5, on_chunk_failure="skip")

    @export.step("fetch")
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        ctx.emit(list(range(int(params["n"]))))

    @export.step("expand", retry=finejobs.Retry(max_attempts=1))
    def expand(ids: list[int], ctx: StepContext) -> None:
        if ids and ids[0] == 5:
            raise RuntimeError("ids 5-9: upstream answered 500")
        ctx.emit([{"id": i} for i in ids])

    @export.step("write", gated=False)
    def write(rows: list[dict[str, Any]], ctx: StepContext) -> None:
        ctx.emit([len(rows)])

    @export.reduce()
    def report(counts: Iterator[int], ctx: StepContext) -> dict[str, int]:
        return {"written": sum(counts)}

    return export


queue = finejobs.Queue()
export = declare(queue)
