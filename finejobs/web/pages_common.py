"""What the console's pages share: the job filter form, the signed flash message shown after an action,
error pages, and the scrubbing of database passwords out of everything a job holds.

A page module (``pages_jobs``, ``pages_ops``, ``pages_schedules`` ...) builds an ``APIRouter`` of plain ``def``
routes over the operations API (``admin_for(request, who)``), renders with ``render(...)``, and after an
action answers ``flash_redirect(...)`` (Post/Redirect/Get: a reload never repeats an action)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import pass_context
from jinja2.runtime import Context

from finejobs.errors import DatabaseUnavailable, FinejobsError, InvalidJobOptions
from finejobs.filters import JobFilter
from finejobs.jobs import JobState
from finejobs.masking import mask_passwords
from finejobs.web.deps import csrf_token, scrub
from finejobs.web.render import render, templates
from finejobs.web.security import Principal

STATES = tuple(s.value for s in JobState)
TEXT_FIELDS = ("kind", "shard", "schedule", "error", "database")
TIME_FIELDS = ("created_after", "created_before", "finished_after", "finished_before")
FILTER_FIELDS = ("state", *TEXT_FIELDS, *TIME_FIELDS)
RAW_CHARS = 1_000  # characters of one form field kept (the filter itself refuses more than 200)
FLASH_ARG_CHARS = 300
A = TypeVar("A")
B = TypeVar("B")


# ---------------------------------------------------------------- the filter form


@dataclass(frozen=True)
class FilterForm:
    """A job filter as typed into a form (query string or posted fields): the raw, non-empty values.

    Times are ``datetime-local`` values (``2026-11-22T08:00``), read as UTC; an offset may be given."""

    values: Mapping[str, str]

    @classmethod
    def read(cls, source: Mapping[str, Any]) -> FilterForm:
        found: dict[str, str] = {}
        for name in FILTER_FIELDS:
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                found[name] = value.strip()[:RAW_CHARS]
        return cls(found)

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    @property
    def is_empty(self) -> bool:
        return not self.values

    def to_filter(self) -> JobFilter:
        """The JobFilter (raises InvalidJobOptions naming the field at fault)."""
        options: dict[str, Any] = {k: v for k, v in self.values.items() if k not in TIME_FIELDS}
        for name in TIME_FIELDS:
            if name in self.values:
                options[name] = parse_time(name, self.values[name])
        return JobFilter(**options)

    def pairs(self) -> list[tuple[str, str]]:
        """(name, value) of each field set, in form order (for hidden fields and links)."""
        return [(name, self.values[name]) for name in FILTER_FIELDS if name in self.values]

    def query(self, **extra: str | int | None) -> str:
        """The query string of this filter (and ``extra`` parameters that are not None)."""
        return urlencode([*self.pairs(), *((k, str(v)) for k, v in extra.items() if v is not None)])

    def describe(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in self.pairs()) or "every job"


def parse_time(name: str, raw: str) -> datetime:
    """A form's date and time: naive means UTC."""
    try:
        if len(raw) > 40:
            raise ValueError
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidJobOptions(f"{name}: not a date and time (YYYY-MM-DDTHH:MM, UTC): {raw[:40]!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def local_value(moment: datetime | None) -> str:
    """A time as a ``datetime-local`` input's value, in UTC."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# ---------------------------------------------------------------- passwords out of what jobs hold


@pass_context
def _scrub_filter(context: Context, text: Any) -> str:
    request = context.get("request")
    return scrub(request, text) if isinstance(request, Request) else mask_passwords("" if text is None else str(text))


templates.env.filters["scrub"] = _scrub_filter  # {{ error.message|scrub }}: then autoescaped as ever


# ---------------------------------------------------------------- flash messages after an action

FLASH_TEXT: dict[str, str] = {
    "retried": "Job {0} will run again now.",
    "cancelled": "Job {0} is cancelled.",
    "deleted": "Job {0} is deleted.",
    "paused": "Paused {0}: workers stop claiming it within about a second (running jobs finish).",
    "resumed": "Resumed {0}: workers claim it again.",
    "not-paused": "{0} was not paused: nothing changed.",
}
BULK_VERBS = {"retry": "Retried", "cancel": "Cancelled", "delete": "Deleted"}


def _signature(request: Request, who: Principal, parts: list[str]) -> str:
    key = csrf_token(request, who).encode()
    return hmac.new(key, "\0".join(["flash", *parts]).encode(), hashlib.sha256).hexdigest()[:24]


def root_of(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root


def flash_redirect(request: Request, who: Principal, path: str, code: str, *args: str | int,
                   query: str = "") -> RedirectResponse:
    """303 to ``path`` (below the console's root) showing the message ``code`` with ``args`` once there; the
    message is signed for ``who``, so a link cannot make the console claim what it did not do."""
    parts = [code, *(str(a)[:FLASH_ARG_CHARS] for a in args)]
    params = urlencode([("done", parts[0]), *(("arg", a) for a in parts[1:]),
                        ("sig", _signature(request, who, parts))])
    joined = f"{query}&{params}" if query else params
    return RedirectResponse(f"{root_of(request)}{path}?{joined}", status_code=303)


def signed_message(request: Request, who: Principal, texts: Mapping[str, str]) -> str | None:
    """The message of a page reached by ``flash_redirect`` whose code is one of ``texts`` (None: none, or a
    link not signed for ``who``)."""
    code, args = _signed(request, who)
    template = None if code is None else texts.get(code)
    if template is None or template.count("{") != len(args):
        return None
    return template.format(*args)


def _signed(request: Request, who: Principal) -> tuple[str | None, list[str]]:
    code, sig = request.query_params.get("done"), request.query_params.get("sig")
    args = request.query_params.getlist("arg")
    if not code or not sig or not hmac.compare_digest(sig.encode(), _signature(request, who, [code, *args]).encode()):
        return None, []  # compared as bytes: a link may hold any text
    return code, args


def read_flash(request: Request, who: Principal) -> dict[str, Any]:
    """The ``flash`` (and ``flash_kind``) context of a page reached by ``flash_redirect`` ({} otherwise)."""
    code, args = _signed(request, who)
    if code is None:
        return {}
    if code == "bulk" and len(args) == 3 and args[0] in BULK_VERBS and args[1].isdigit() and args[2].isdigit():
        action, matched, changed = args[0], int(args[1]), int(args[2])
        text = f"{BULK_VERBS[action]} {changed:,} of the {matched:,} matching jobs."
        if matched > changed:
            text += (f" {matched - changed:,} were left as they were (a worker held them at that moment"
                     + (", or an unfinished job holds their unique key)." if action == "retry" else ")."))
        return {"flash": text, "flash_kind": "ok"}
    message = signed_message(request, who, FLASH_TEXT)
    return {} if message is None else {"flash": message, "flash_kind": "ok"}


# ---------------------------------------------------------------- forms, htmx, errors


async def posted_fields(request: Request) -> dict[str, str]:
    """The fields of a posted form (read once: the CSRF check reads the same parsed form)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


Posted = Annotated[dict[str, str], Depends(posted_fields)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def status_of(exc: FinejobsError) -> int:
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, DatabaseUnavailable):
        return 503
    return 422


def error_page(request: Request, who: Principal, exc: FinejobsError, *, page: str = "",
               title: str = "Refused") -> HTMLResponse:
    """The error page of a finejobs error: 404 for what does not exist, 503 without a database, else 422."""
    status = status_of(exc)
    heading = "Not found" if status == 404 else "Database unavailable" if status == 503 else title
    return render(request, who, "error.html", page=page, status_code=status, status=status, heading=heading,
                  message=scrub(request, exc))



# ---------------------------------------------------------------- two reads at once

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def both(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """``first()`` here and ``second()`` on a helper thread, at the same time (two bounded reads of a page,
    each on its own pooled connection: the page waits for the slower one, not for their sum)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="finejobs-page")
    later = _pool.submit(second)
    try:
        found = first()
    except BaseException:
        wait([later])  # never leave it running past the request; the first error is the one raised
        raise
    return found, later.result()
