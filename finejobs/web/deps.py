"""What every route of the console depends on: the console's state, who asks, and the Admin acting as them.

Routes are plain ``def`` functions (FastAPI runs them in its thread pool: the operations API blocks) that
take ``who: Principal = Depends(viewer)`` to read, or ``Depends(operator)`` to act (the operator role, and
for a request not authenticated by a bearer token, the CSRF token in the ``X-CSRF-Token`` header or the
``csrf`` form field), and ``admin_for(request, who)`` for the operations API recorded as done by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from finejobs.admin import Admin
from finejobs.errors import FinejobsError
from finejobs.masking import mask_passwords, password_forms
from finejobs.web.security import CSRF_FIELD, CSRF_HEADER, Gate, Principal

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


@dataclass
class Console:
    """One console app's state (``request.app.state.console``)."""

    admin: Admin
    gate: Gate
    extras: dict[str, Any] = field(default_factory=dict)  # per-app caches (the metrics registry, ...)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def viewer(request: Request) -> Principal:
    """The principal making the request (viewer or operator); 401 without valid credentials, 403 for an
    open console asked from beyond loopback."""
    console = console_of(request)
    client = request.client.host if request.client else None
    who = console.gate.identify(authorization=request.headers.get("authorization"), client_host=client,
                                host_header=request.headers.get("host"),
                                proxied=any(h in request.headers for h in PROXY_HEADERS))
    if who == "forbidden":
        raise HTTPException(403, "this console has no credentials configured and answers only on loopback "
                                 "(see docs/console.md: security)")
    if who is None:
        raise HTTPException(401, "credentials required", headers={"WWW-Authenticate": 'Basic realm="finejobs"'})
    request.state.principal = who
    return who


async def operator(request: Request) -> Principal:
    """The principal, who must be an operator; an unsafe request must carry its CSRF token."""
    who = viewer(request)
    if not who.can_act:
        raise HTTPException(403, f"{who.name} is a viewer: actions need the operator role")
    if request.method in UNSAFE_METHODS and not console_of(request).gate.csrf_ok(who, await _csrf_sent(request)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return who


async def _csrf_sent(request: Request) -> str | None:
    sent = request.headers.get(CSRF_HEADER)
    if sent:
        return sent
    kind = request.headers.get("content-type", "")
    if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached on the request: the route reads the same form
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def admin_for(request: Request, who: Principal) -> Admin:
    """The operations API, its actions recorded in the audit log as done by ``who``."""
    return console_of(request).admin.as_actor(f"web:{who.name}")


def secrets_of(request: Request) -> frozenset[str]:
    """Every form of the passwords in the queue's database URLs (computed once per console)."""
    console = console_of(request)
    found = console.extras.get("secrets")
    if found is None:
        queue = console.admin.queue
        forms: set[str] = set()
        for name in queue.databases:
            try:
                forms |= password_forms(queue.shard_map.url(name))
            except FinejobsError:  # a URL that cannot be read has no password to find
                continue
        found = console.extras["secrets"] = frozenset(f for f in forms if len(f) >= 3)
    return frozenset(found)


def scrub(request: Request, text: Any) -> str:
    """``text`` with passwords masked: those of any URL in it, and the queue's database passwords in any form
    (a handler's error may quote the URL it was given). Every surface scrubs what jobs hold before showing it."""
    out = mask_passwords("" if text is None else str(text))
    for secret in sorted(secrets_of(request), key=len, reverse=True):
        out = out.replace(secret, "***")
    return out


def csrf_token(request: Request, who: Principal) -> str:
    """The CSRF token to put in the forms (and the htmx header) of a page served to ``who``."""
    return console_of(request).gate.csrf_token(who)


Viewer = Annotated[Principal, Depends(viewer)]  # a route parameter ``who: Viewer``: anyone signed in
Operator = Annotated[Principal, Depends(operator)]  # ``who: Operator``: an operator, CSRF checked
