"""Placeholder: the REST API (being written)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse

from finejobs.errors import FinejobsError

router = APIRouter()


def error_response(request: Request, exc: FinejobsError) -> Response:
    return JSONResponse({"detail": [{"msg": str(exc), "type": type(exc).__name__}]}, status_code=422)


def http_error_response(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
