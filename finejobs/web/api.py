"""The REST API under ``/api/v1`` (its OpenAPI schema at ``/api/v1/openapi.json``): jobs, counts, kinds,
shards, pauses, workers, the audit log (``api_jobs``), schedules (``api_schedules``), groups (``api_groups``)
and pipeline runs (``api_pipelines``), each route a thin view over finejobs.admin.Admin; models in
``schemas`` (and ``schemas_groups``).

Reading needs a viewer; acting (POST, PATCH, DELETE) an operator, and, unless the request carries a bearer
token, the user's CSRF token in ``X-CSRF-Token`` (finejobs.web.deps). Bad input is answered 422 with the
same finejobs errors as the Python API, each naming its field in ``loc``; an unknown job, schedule, group or
pipeline run 404; an action refused in the current state (deleting a running job, a schedule name taken,
cancelling a finished group or run) 409.
"""

from __future__ import annotations

from fastapi import APIRouter, Security

from finejobs.web import api_groups, api_jobs, api_pipelines, api_schedules
from finejobs.web.api_common import BASIC, BEARER, error_response, http_error_response

router = APIRouter()
_AUTH = [Security(BASIC), Security(BEARER)]  # documents both schemes in the schema; deps checks them
router.include_router(api_jobs.router, dependencies=_AUTH)
router.include_router(api_schedules.router, dependencies=_AUTH)
router.include_router(api_groups.router, dependencies=_AUTH)
router.include_router(api_pipelines.router, dependencies=_AUTH)

__all__ = ["error_response", "http_error_response", "router"]
