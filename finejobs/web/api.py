"""The REST API under ``/api/v1`` (its OpenAPI schema at ``/api/v1/openapi.json``): jobs, counts, kinds,
shards, pauses, workers, the audit log (``api_jobs``) and schedules (``api_schedules``), each route a thin
view over finejobs.admin.Admin; models in ``schemas``.

Reading needs a viewer; acting (POST, PATCH, DELETE) an operator, and, unless the request carries a bearer
token, the user's CSRF token in ``X-CSRF-Token`` (finejobs.web.deps). Bad input is answered 422 with the
same finejobs errors as the Python API, each naming its field in ``loc``; an unknown job or schedule 404; an
action refused in the current state (deleting a running job, a schedule name taken) 409.
"""

from __future__ import annotations

from fastapi import APIRouter, Security

from finejobs.web import api_jobs, api_schedules
from finejobs.web.api_common import BASIC, BEARER, error_response, http_error_response

router = APIRouter()
_AUTH = [Security(BASIC), Security(BEARER)]  # documents both schemes in the schema; deps checks them
router.include_router(api_jobs.router, dependencies=_AUTH)
router.include_router(api_schedules.router, dependencies=_AUTH)

__all__ = ["error_response", "http_error_response", "router"]
