"""The export pipeline: what a FHIR server would declare. Resources live in the app's own table,
``bulk_export_resources`` (id, resource_type, last_updated, body jsonb), beside finejobs' tables.

```
fetch-ids   params: types, since        -> [type, id] pairs, a chunk per chunk_size ids (keyset pages)
expand      streaming: a chunk of ids   -> the resources' NDJSON lines (one SELECT per chunk)
write       gated: a chunk of lines     -> one NDJSON file per resource type and chunk (named by chunk id,
                                           so a re-run rewrites the same file)
report      reduction: every file       -> counts per type and the file list: the run's result
```
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, Field

import finejobs
from finejobs.pipelines import StepContext, pipeline
from finejobs.store import libpq_url

queue = finejobs.Queue()  # URL from FINEJOBS_DATABASE_URL (the demo configures it)

RESOURCE_TYPES = ("Patient", "Observation", "Encounter", "Condition", "MedicationRequest")
PAGE = 5_000  # ids fetch-ids reads per statement

export = pipeline(queue, "bulk-export", chunk_size=500, on_chunk_failure="fail")


class ExportParams(BaseModel):
    """What a ``$export`` request carries: the resource types (``_type``), ``_since``, and where files go."""

    types: list[str] = Field(default_factory=lambda: list(RESOURCE_TYPES))
    since: datetime | None = None
    out_dir: str


def _connect() -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(queue.url), autocommit=True)


@export.step("fetch-ids", retry=finejobs.Retry(max_attempts=3, backoff=timedelta(milliseconds=200)))
def fetch_ids(params: ExportParams, ctx: StepContext) -> None:
    """Page through the matching resources' ids (keyset on the id: no OFFSET, no long transaction)."""
    after = 0
    with _connect() as conn:
        while True:
            rows = conn.execute(
                "SELECT id, resource_type FROM bulk_export_resources WHERE id > %s AND resource_type = ANY(%s) "
                "AND (%s::timestamptz IS NULL OR last_updated >= %s) ORDER BY id LIMIT %s",
                (after, params.types, params.since, params.since, PAGE)).fetchall()
            ctx.emit([[rtype, rid] for rid, rtype in rows])
            if len(rows) < PAGE:
                return
            after = rows[-1][0]


@export.step("expand", gated=False, retry=finejobs.Retry(max_attempts=5, backoff=timedelta(milliseconds=100)))
def expand(ids: list[list[Any]], ctx: StepContext) -> None:
    """Load one chunk's resources and serialize each as an NDJSON line (streaming: starts on the first chunk)."""
    with _connect() as conn:
        rows = conn.execute("SELECT resource_type, body FROM bulk_export_resources WHERE id = ANY(%s) ORDER BY id",
                            ([rid for _, rid in ids],)).fetchall()
    ctx.emit([[rtype, json.dumps(body, separators=(",", ":"))] for rtype, body in rows])


@export.step("write", retry=finejobs.Retry(max_attempts=5, backoff=timedelta(milliseconds=100)))
def write(lines: list[list[str]], ctx: StepContext) -> None:
    """Write one NDJSON file per resource type in this chunk (gated: after every resource was expanded)."""
    by_type: dict[str, list[str]] = {}
    for rtype, line in lines:
        by_type.setdefault(rtype, []).append(line)
    out = Path(ctx.params["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for rtype, body in sorted(by_type.items()):
        path = out / f"{rtype}-{ctx.chunk_id:08d}.ndjson"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(body) + "\n", encoding="utf-8")
        tmp.replace(path)  # whole files only, even if this attempt dies half-way
        files.append({"type": rtype, "file": path.name, "count": len(body)})
    ctx.emit(files)


@export.reduce("report")
def report(files: Iterator[dict[str, Any]], ctx: StepContext) -> dict[str, Any]:
    """The export's manifest: resources and files per type (it reads the file list page by page)."""
    counts: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    names: list[str] = []
    for f in files:
        counts[f["type"]] += f["count"]
        per_type[f["type"]] += 1
        names.append(f["file"])
    return {"resources": sum(counts.values()), "by_type": dict(sorted(counts.items())),
            "files_by_type": dict(sorted(per_type.items())), "files": sorted(names),
            "out_dir": ctx.params["out_dir"]}


def export_dir_default() -> str:
    return os.path.join(os.getcwd(), "bulk-export-out")
