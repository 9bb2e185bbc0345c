"""The console as one ASGI app: pages at ``/``, the REST API under ``/api/v1`` (OpenAPI schema at
``/api/v1/openapi.json``), Prometheus metrics at ``/metrics``, static assets at ``/static``."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from finejobs import __version__
from finejobs.admin import Admin
from finejobs.errors import FinejobsError
from finejobs.queue import Queue
from finejobs.web import api, pages
from finejobs.web.deps import Console, Viewer, console_of
from finejobs.web.security import Access, Gate, app_secret

API_PREFIX = "/api/v1"


def app(queue: Queue, *, access: Access | None = None, secret: bytes | str | None = None,
        title: str = "finejobs") -> FastAPI:
    """The console of ``queue``: mount it (``parent.mount("/jobs", finejobs.web.app(queue))``) or serve it
    (``finejobs web --app myapp.jobs:queue``). ``access``: the credentials (default: none, an open console
    that answers loopback only); ``secret``: the key of its CSRF tokens (default $FINEJOBS_WEB_SECRET, else
    random per process: give every process of one console the same one)."""
    if not isinstance(queue, Queue):
        raise FinejobsError(f"finejobs.web.app needs a finejobs.Queue, got {type(queue).__name__}")
    if access is not None and not isinstance(access, Access):
        raise FinejobsError(f"access must be a finejobs.web.Access, got {type(access).__name__}")
    console = Console(Admin(queue, actor="web"), Gate(access or Access.open(), app_secret(secret)))
    application = FastAPI(title=f"{title} console", version=__version__, openapi_url=f"{API_PREFIX}/openapi.json",
                          docs_url=f"{API_PREFIX}/docs", redoc_url=None,
                          description="The finejobs operations API: jobs, schedules, shards, pauses, workers.")
    application.state.console = console
    application.include_router(api.router, prefix=API_PREFIX)
    application.include_router(pages.router, include_in_schema=False)
    application.mount("/static", StaticFiles(directory=str(files("finejobs.web") / "static")), name="static")
    application.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)

    @application.exception_handler(FinejobsError)
    def _finejobs_error(request: Request, exc: FinejobsError) -> Response:
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}{API_PREFIX}"):
            return api.error_response(request, exc)
        return pages.error_response(request, exc)

    @application.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}{API_PREFIX}"):
            return api.http_error_response(request, exc)
        return pages.http_error_response(request, exc)

    return application


def _metrics(request: Request, who: Viewer) -> Response:
    """Prometheus exposition of the console's registry (counts cached a few seconds by the Admin)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from finejobs.metrics import console_registry

    console: Console = console_of(request)
    registry = console.extras.get("registry")
    if registry is None:
        registry = console.extras["registry"] = console_registry(console.admin)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
