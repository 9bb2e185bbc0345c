"""Placeholder: the pages (being written)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse

from finejobs.errors import FinejobsError
from finejobs.web.deps import Viewer

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, who: Viewer) -> str:
    return f"<html><body>finejobs console: {who.name}</body></html>"


def error_response(request: Request, exc: FinejobsError) -> Response:
    return PlainTextResponse(str(exc), status_code=422)


def http_error_response(request: Request, exc: HTTPException) -> Response:
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
