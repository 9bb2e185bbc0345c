"""The operations pages: shards and kinds (counts, partitions, pause / resume), the worker registry, and the
audit log of every action."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from finejobs.admin import KindInfo
from finejobs.errors import FinejobsError, InvalidJobOptions
from finejobs.web.deps import Operator, Viewer, admin_for
from finejobs.web.pages_common import STATES, Posted, both, error_page, flash_redirect, read_flash
from finejobs.web.render import render

router = APIRouter()

AUDIT_PAGE = 50
MAIN_COUNTERS = ("claimed", "succeeded", "retried", "failed")  # a column each; the other counters in one


def describe(kind: str | None, shard: str | None) -> str:
    if kind and shard:
        return f"kind {kind} in shard {shard}"
    return f"kind {kind}" if kind else f"shard {shard}"


@router.get("/shards", response_class=HTMLResponse)
def shards(request: Request, who: Viewer) -> Response:
    """Every shard (partition, counts by state, lag, expiring soon, paused?) and every kind, with pause and
    resume for operators; the current pauses."""
    admin = admin_for(request, who)
    stats, found = both(admin.stats, admin.shards)
    declared = {k.name: k for k in admin.kinds()}
    kinds: list[tuple[str, KindInfo | None, dict[str, int]]] = [
        (name, declared.get(name), stats.by_kind.get(name, {})) for name in sorted(set(declared) | set(stats.by_kind))]
    paused = list(stats.paused)
    return render(request, who, "shards.html", page="shards", shards=found, kinds=kinds, stats=stats,
                  states=STATES, paused=paused, databases=admin.queue.databases,
                  paused_shards={p.shard for p in paused if p.kind is None},
                  paused_kinds={p.kind for p in paused if p.shard is None}, **read_flash(request, who))


def _target(fields: dict[str, str]) -> tuple[str | None, str | None]:
    kind = fields.get("kind", "").strip() or None
    shard = fields.get("shard", "").strip() or None
    if kind is None and shard is None:
        raise InvalidJobOptions("pause or resume what? name a kind, a shard, or both")
    return kind, shard


@router.post("/pause", response_class=HTMLResponse)
def pause(request: Request, who: Operator, fields: Posted) -> Response:
    """Pause a kind, a shard, or a kind within a shard (workers stop claiming it within about a second)."""
    try:
        kind, shard = _target(fields)
        admin_for(request, who).pause(kind=kind, shard=shard, reason=fields.get("reason", "").strip() or None)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="shards")
    return flash_redirect(request, who, "/shards", "paused", describe(kind, shard))


@router.post("/resume", response_class=HTMLResponse)
def resume(request: Request, who: Operator, fields: Posted) -> Response:
    """Let workers claim a paused kind or shard again."""
    try:
        kind, shard = _target(fields)
        resumed = admin_for(request, who).resume(kind=kind, shard=shard)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="shards")
    return flash_redirect(request, who, "/shards", "resumed" if resumed else "not-paused", describe(kind, shard))


@router.get("/workers", response_class=HTMLResponse)
def workers(request: Request, who: Viewer) -> Response:
    """The worker registry: alive or gone, what each serves, in flight, its counters."""
    admin = admin_for(request, who)
    found = admin.workers()
    return render(request, who, "workers.html", page="workers", workers=found, counters=MAIN_COUNTERS,
                  alive=sum(1 for w in found if w.alive), many_databases=len(admin.queue.databases) > 1)


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, who: Viewer) -> Response:
    """The audit log, newest first: who did what, to which jobs (a filter), to how many; older by ``before``."""
    raw = request.query_params.get("before") or None
    try:
        if raw is not None and (not raw.isdigit() or len(raw) > 19):
            raise InvalidJobOptions(f"before: an audit entry's number, got {raw[:20]!r}")
        before = None if raw is None else int(raw)
        entries = admin_for(request, who).audit(before=before, limit=AUDIT_PAGE)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="audit")
    older = entries[-1].id if len(entries) == AUDIT_PAGE and entries[-1].id > 1 else None
    return render(request, who, "audit.html", page="audit", entries=entries, older=older, before=before,
                  target_text=_target_text)


def _target_text(target: dict[str, Any]) -> list[tuple[str, str]]:
    """An audit entry's target as (name, text) pairs: a filter's fields, a job, a schedule, a kind, a shard."""
    pairs: list[tuple[str, str]] = []
    for key, value in target.items():
        if value is None:
            continue
        if isinstance(value, dict):
            pairs += [(f"{key}.{k}" if key != "filter" else str(k), str(v)) for k, v in value.items()]
        else:
            pairs.append((str(key), str(value)))
    return pairs
