"""The finejobs console (``finejobs[web]``) inside a Django project's ASGI application:

```python
# asgi.py
application = with_console(get_asgi_application(), prefix="/jobs",
                           access=finejobs.web.Access.from_file("access.toml"))
```
Requests under ``prefix`` go to the console of the project's finejobs backend (its own access rules: without
``access`` it answers loopback only); every other request goes to Django.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def with_console(application: ASGIApp, *, prefix: str = "/jobs", access: Any = None,
                 backend: str | None = None) -> ASGIApp:
    """``application`` with the finejobs console mounted at ``prefix`` (made at its first request)."""
    prefix = "/" + prefix.strip("/")
    made: list[Any] = []

    def console() -> Any:
        if not made:
            from finejobs import web
            from finejobs.contrib.django.app import queue_of

            made.append(web.app(queue_of(backend), access=access))
        return made[0]

    async def app(scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and (path == prefix or path.startswith(prefix + "/")):
            if path == prefix:  # the console's root is prefix + "/"
                await send({"type": "http.response.start", "status": 307,
                            "headers": [(b"location", f"{scope.get('root_path', '')}{prefix}/".encode())]})
                await send({"type": "http.response.body", "body": b""})
                return
            inner = dict(scope, root_path=scope.get("root_path", "") + prefix)
            await console()(inner, receive, send)
            return
        await application(scope, receive, send)

    return app
