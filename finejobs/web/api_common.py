"""What the REST API's routes share: the error answers (a finejobs error named by its field), the documented
responses and security schemes, and the scrubbing of passwords out of everything sent back."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBearer
from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException

from finejobs.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    EnqueueError,
    FinejobsError,
    GroupNotFound,
    InvalidJobOptions,
    JobNotFound,
    PayloadError,
    PipelineNotFound,
    SchemaError,
)
from finejobs.scheduler import ScheduleNotFound
from finejobs.web.deps import scrub
from finejobs.web.schemas import Message, Problems

# ---------------------------------------------------------------- names in paths


class _NameConvertor(Convertor[str]):
    """A schedule's or group's name in a path (``{name:path_name}``): one or more characters, ``/`` included."""

    regex = ".+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("path_name", _NameConvertor())


# ---------------------------------------------------------------- documented responses

_MESSAGE: dict[str, Any] = {"model": Message}
READ: dict[int | str, dict[str, Any]] = {
    401: {**_MESSAGE, "description": "No credentials, or wrong ones"},
    403: {**_MESSAGE, "description": "Not allowed: an open console asked from beyond loopback; for an action, "
                                     "a viewer, or a missing CSRF token (X-CSRF-Token)"},
    422: {"model": Problems, "description": "Bad input: each problem names its field in `loc`"},
}
_CONFLICT: dict[str, Any] = {**_MESSAGE, "description": "Refused in the current state (a running job cannot be "
                                                         "deleted, a schedule name is taken, ...)"}
ITEM: dict[int | str, dict[str, Any]] = {**READ, 404: {**_MESSAGE, "description": "No such job, schedule, group "
                                                                            "or pipeline run"}}
ACTION: dict[int | str, dict[str, Any]] = {**READ, 409: _CONFLICT}  # an action on no one job or schedule
ACT: dict[int | str, dict[str, Any]] = {**ITEM, 409: _CONFLICT}  # an action on one job or schedule


class _DocumentedBasic(HTTPBasic):
    """Documents HTTP Basic in the schema; finejobs.web.deps checks the credentials."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


class _DocumentedBearer(HTTPBearer):
    """Documents bearer tokens in the schema; finejobs.web.deps checks them."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


BASIC = _DocumentedBasic(scheme_name="basic", auto_error=False, description=(
    "A console user (viewer or operator). An action (POST, PATCH, DELETE) also needs the user's CSRF token in "
    "the X-CSRF-Token header."))
BEARER = _DocumentedBearer(scheme_name="bearer", auto_error=False, description=(
    "A console token (viewer or operator); actions need no CSRF token."))

# ---------------------------------------------------------------- errors


def status_of(exc: FinejobsError) -> int:
    if isinstance(exc, JobNotFound | ScheduleNotFound | GroupNotFound | PipelineNotFound):
        return 404
    if isinstance(exc, EnqueueError | ConfigurationError):
        return 422
    if isinstance(exc, DatabaseUnavailable | SchemaError):
        return 503
    return 409  # the rest: an action refused in the current state


_RULE_PREFIX = re.compile(r"^(?:[A-Z][A-Za-z]*: )+")  # "Every: count must ..."
_LEADING = re.compile(r"^([a-z][a-z0-9_]*)\b")
_PHRASES = {"invalid shard name": "shard", "unknown job kind": "kind", "job id": "job_id"}
_SECONDS = ("expires_in", "misfire_grace")  # options the REST API names ..._seconds


def field_of(message: str, names: Iterable[str]) -> str | None:
    """The field a finejobs message names first ("state: unknown state ...", "limit must be ..."), if known."""
    text = _RULE_PREFIX.sub("", message)
    word = next((field for phrase, field in _PHRASES.items() if text.startswith(phrase)), None)
    if word is None:
        found = _LEADING.match(text)
        word = found.group(1) if found else None
    known = set(names)
    if word in _SECONDS and word not in known:
        word += "_seconds"
    return word if word is not None and word in known else None


@contextmanager
def located(*where: str, names: Iterable[str] = ()) -> Iterator[None]:
    """Errors raised inside name a field under ``where`` (``located("body", "rule", names=...)``)."""
    try:
        yield
    except FinejobsError as exc:
        if not isinstance(exc, PayloadError) and getattr(exc, "loc", None) is None:
            field = field_of(str(exc), names)
            exc.loc = [*where, *([field] if field else [])]  # type: ignore[attr-defined]
        raise


def _route_fields(request: Request) -> tuple[dict[str, list[str | int]], str]:
    """The route's parameters by name (path, query, the body model's fields) and the default location."""
    where: dict[str, list[str | int]] = {}
    seen: set[str] = set()
    todo = [getattr(request.scope.get("route"), "dependant", None)]
    while todo:
        dependant = todo.pop()
        if dependant is None:
            continue
        for place in ("path", "query", "body"):
            for param in getattr(dependant, f"{place}_params", ()):
                seen.add(place)
                if place != "body":
                    where.setdefault(param.alias, [place, param.alias])
                    continue
                for model in _models(param.field_info.annotation):
                    for name in model.model_fields:
                        where.setdefault(name, ["body", name])
        todo.extend(getattr(dependant, "dependencies", ()))
    default = next((p for p in ("body", "query", "path") if p in seen), "body")
    return where, default


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _type(exc: Exception) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(request: Request, exc: FinejobsError) -> Response:
    """A finejobs error as the REST API answers it: 422 naming the field, 404, 409 or 503."""
    status = status_of(exc)
    message = scrub(request, str(exc))
    if status != 422:
        return JSONResponse({"detail": message}, status_code=status)
    if isinstance(exc, PayloadError):
        problems = [{"loc": ["body", "payload", *([] if f == "<root>" else f.split("."))], "msg": message,
                     "type": _type(exc)} for f in (exc.fields or ["<root>"])]
        return JSONResponse({"detail": problems}, status_code=422)
    loc = getattr(exc, "loc", None)
    if loc is None:
        fields, default = _route_fields(request)
        name = field_of(str(exc), fields)
        loc = fields[name] if name is not None else [default]
    return JSONResponse({"detail": [{"loc": loc, "msg": message, "type": _type(exc)}]}, status_code=422)


class Route(APIRoute):
    """A route whose own HTTP errors (FastAPI raises Starlette's HTTPException when it cannot read a body,
    which the app's handler of FastAPI's HTTPException does not see) are answered as the API answers them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except StarletteHTTPException as exc:
                if isinstance(exc, HTTPException):
                    raise
                return http_error_response(request, exc)

        return run


def http_error_response(request: Request, exc: StarletteHTTPException) -> Response:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8): bad input, as a JSON error is
        problem = {"loc": ["body"], "msg": f"the body is not valid JSON: {detail}", "type": "json_invalid"}
        return JSONResponse({"detail": [problem]}, status_code=422)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


def refuse(message: str, *loc: str) -> FinejobsError:
    """A 422 naming ``loc`` (for checks the REST API makes itself)."""
    exc = InvalidJobOptions(message)
    exc.loc = list(loc)  # type: ignore[attr-defined]
    return exc


# ---------------------------------------------------------------- passwords
