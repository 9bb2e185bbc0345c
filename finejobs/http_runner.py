"""The built-in job kind of HTTP services: POST the parameters as JSON, read the reply, map it to an outcome.

```
reply {"code": "success", "message": ...}            -> succeeded            (schedule outcome: success)
reply {"code": "idle", ...}                          -> succeeded, 'idle'    (finejobs.Idle: on_idle)
reply {"code": "error", "message", "error_details"}  -> failed, ServiceError (on_error)
no reply within the service's timeout                -> failed, 'timeout'    (on_timeout)
HTTP error status, not JSON, wrong content type,
missing or unknown code, connection refused          -> failed, ServiceError (on_error)
```
Each call carries ``X-Finejobs-Job-Id`` (the run's job id) and ``X-Finejobs-Attempt``, for the service's own
logs and deduplication. One log line per run (logger ``finejobs.services``): service, code, message, error
details, duration.
Endpoints may carry credentials (``user:pass@``, tokens in the query string): only ``mask_endpoint``'s form
of them is ever logged or put in an error. The whole call (connect, send, reply) is bounded by the
service's ``timeout``; httpx's connect, read, write and pool timeouts are set to it as well.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pydantic

from finejobs._version import __version__
from finejobs.jobs import JobContext
from finejobs.limits import cap, log_safe
from finejobs.outcomes import Idle

KIND = "finejobs.http_service"
CODES = ("success", "idle", "error")
_BODY_SNIPPET = 200  # characters of an unexpected reply quoted in the error

log = logging.getLogger("finejobs.services")


class _MaskedUrls(logging.Filter):
    """httpx logs each request's URL at INFO ("HTTP Request: POST <url> ..."): masked like every endpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(mask_endpoint(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


if not any(isinstance(f, _MaskedUrls) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_MaskedUrls())


class ServiceCall(pydantic.BaseModel):
    """The payload of a service's jobs: everything a worker needs to call it (the schedule's payload)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    service: str
    endpoint: str
    parameters: dict[str, Any] = pydantic.Field(default_factory=dict)
    timeout: float = pydantic.Field(gt=0)


class ServiceError(Exception):
    """A run that ended in error: the service said ``code: error``, or its reply could not be used.

    ``message`` and ``error_details`` are recorded in the job's error (its message is
    ``<message> | error_details: <JSON>``)."""

    def __init__(self, message: str, error_details: Any = None) -> None:
        self.message = message
        self.error_details = error_details
        text = message if error_details in (None, [], {}) else \
            f"{message} | error_details: {json.dumps(error_details, default=str, ensure_ascii=False)}"
        super().__init__(text)


class ServiceTimeout(Exception):
    """No complete reply within the service's timeout: the run's outcome is ``timeout``.

    Not a TimeoutError subclass: the executor takes a TimeoutError out of an async handler for its kind's own
    timeout (finejobs.runtime.executing); its name is what makes the outcome ``timeout``."""


def mask_endpoint(url: str) -> str:
    """The endpoint as it may be shown: the user-info password and every query-string value as ``***``
    (``https://user:***@host/run?token=***``); text that is no URL is shown as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        query = "&".join(f"{item.split('=', 1)[0]}=***" if item else "" for item in parts.query.split("&")) \
            if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "***"


async def run_service(call: ServiceCall, context: JobContext | None = None) -> object:
    """The handler of the built-in kind: one POST, its reply mapped to an outcome (see the module doc)."""
    started = time.monotonic()
    try:
        reply = await post(call, context)
    except ServiceTimeout as exc:
        _log_line(call.service, "timeout", str(exc), None, time.monotonic() - started)
        raise
    except ServiceError as exc:
        _log_line(call.service, "error", exc.message, exc.error_details, time.monotonic() - started)
        raise
    code, message, details = reply
    _log_line(call.service, code, message, details, time.monotonic() - started)
    if code == "error":
        raise ServiceError(message or "the service answered code 'error'", details)
    if code == "idle":
        return Idle({"code": code, "message": message})  # idle (on_idle), the message kept as for success
    return {"code": code, "message": message}


async def post(call: ServiceCall, context: JobContext | None = None) -> tuple[str, str, Any]:
    """POST ``call.parameters`` to the endpoint (naming the job of ``context`` in two headers); the reply's
    (code, message, error_details).

    ServiceTimeout when no complete reply comes within ``call.timeout``; ServiceError for everything
    else that is not a usable reply."""
    where = mask_endpoint(call.endpoint)
    seconds = call.timeout
    limits = httpx.Timeout(seconds, connect=seconds, read=seconds, write=seconds, pool=seconds)
    headers = {"Accept": "application/json", "User-Agent": f"finejobs/{__version__}"}
    if context is not None:
        headers |= {"X-Finejobs-Job-Id": str(context.job.id), "X-Finejobs-Attempt": str(context.attempt)}
    try:
        async with asyncio.timeout(seconds), httpx.AsyncClient(timeout=limits, follow_redirects=False) as client:
            response = await client.post(call.endpoint, json=call.parameters, headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        raise ServiceTimeout(f"no reply from {where} within the timeout of {seconds:g}s") from None
    except httpx.ConnectError as exc:
        raise ServiceError(f"cannot connect to {where}: {_reason(exc)}") from None
    except httpx.HTTPError as exc:
        raise ServiceError(f"the call to {where} failed: {type(exc).__name__}: {_reason(exc)}") from None
    return parse_reply(response.status_code, response.headers.get("content-type", ""), response.content, where)


def parse_reply(status: int, content_type: str, body: bytes, where: str = "the service") -> tuple[str, str, Any]:
    """(code, message, error_details) of a reply; ServiceError naming what is wrong with it."""
    text = body.decode("utf-8", errors="replace")
    if status >= 300:
        phrase = _phrase(status)
        raise ServiceError(f"HTTP {status}{phrase} from {where}" + (f": {_snippet(text)}" if text.strip() else ""))
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ServiceError(f"{where} answered with content type {media or '(none)'!r}, not application/json: "
                           f"{_snippet(text)}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{where} answered a body that is not JSON ({exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}): {_snippet(text)}") from None
    if not isinstance(data, dict):
        raise ServiceError(f"{where} answered JSON that is not an object: {_snippet(text)}")
    if "code" not in data:
        raise ServiceError(f"{where} answered without a 'code' (expected one of {', '.join(CODES)}): "
                           f"{_snippet(text)}")
    code = data["code"]
    if code not in CODES:
        raise ServiceError(f"{where} answered an unknown code {cap(str(code), 100)!r} "
                           f"(expected one of {', '.join(CODES)})")
    message = data.get("message")
    message_text = "" if message is None else message if isinstance(message, str) else json.dumps(message)
    return code, cap(message_text, 2000), data.get("error_details")


def _log_line(service: str, code: str, message: str, details: Any, duration: float) -> None:
    level = logging.INFO if code in ("success", "idle") else logging.WARNING
    shown = "-" if details in (None, [], {}) else json.dumps(details, default=str, ensure_ascii=False)
    log.log(level, "service=%s code=%s message=%s error_details=%s duration=%.3fs", log_safe(service), code,
            log_safe(message or "-"), log_safe(shown), duration)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered or "errno 111" in lowered:
        return "connection refused"
    if "all connection attempts failed" in lowered:
        return "connection refused or host unreachable"
    return cap(text, 300)


def _phrase(status: int) -> str:
    try:
        from http import HTTPStatus

        return f" {HTTPStatus(status).phrase}"
    except ValueError:
        return ""


def _snippet(text: str) -> str:
    return repr(cap(text.strip(), _BODY_SNIPPET))
