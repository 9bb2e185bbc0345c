"""What every finejobs admin page shares: the operations API acting as the signed-in user, Django's
permissions (``view_*`` to see, ``change_*`` to act), the admin's LogEntry for each action, bad input shown as a
message with nothing written.

The pages are ModelAdmins of unmanaged models (finejobs.contrib.django.models) whose views are replaced:
nothing reads the ORM; every read and action is one call of ``finejobs.Admin``. The admin serves the backend
named by the setting FINEJOBS_ADMIN_BACKEND (a TASKS alias), else the first finejobs backend in TASKS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

import finejobs
from finejobs.contrib.django.compat import task_backends
from finejobs.errors import FinejobsError

ADMIN_BACKEND_SETTING = "FINEJOBS_ADMIN_BACKEND"


def admin_backend() -> Any:
    """The finejobs backend the admin pages operate."""
    from finejobs.contrib.django.backend import FinejobsBackend

    wanted = getattr(settings, ADMIN_BACKEND_SETTING, None)
    for alias in [wanted] if wanted else list(task_backends.settings):
        backend = task_backends[alias]
        if isinstance(backend, FinejobsBackend):
            return backend
    raise ImproperlyConfigured(f"no finejobs task backend{f' {wanted!r}' if wanted else ''} in TASKS: the finejobs "
                               "admin needs one ('BACKEND': 'finejobs.contrib.django.FinejobsBackend')")


class OperationsAdmin(admin.ModelAdmin):  # type: ignore[misc]
    """A ModelAdmin whose pages are views over finejobs.Admin (subclasses give ``pages()``)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def operations(self, request: HttpRequest) -> finejobs.Admin:
        """The operations API, acting (in finejobs' audit log) as the signed-in user."""
        return finejobs.Admin(admin_backend().queue, actor=f"django:{request.user.get_username()}"[:200])

    def pages(self) -> list[tuple[str, Callable[..., HttpResponse], str]]:
        raise NotImplementedError

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [path(route, self.admin_site.admin_view(view), name=f"{info[0]}_{info[1]}_{name}")
                for route, view, name in self.pages()]

    def url(self, name: str, *args: Any) -> str:
        return str(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args))

    # ---------------------------------------------------------------- permissions

    def viewing(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def changing(self, request: HttpRequest) -> None:
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied

    # ---------------------------------------------------------------- rendering, acting, logging

    def render(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(request, f"finejobs/admin/{template}", {
            **self.admin_site.each_context(request), "opts": self.opts, "title": title,
            "can_change": self.has_change_permission(request), "app_label": self.opts.app_label,
            "changelist_url": self.url("changelist"), **context})

    def act(self, request: HttpRequest, action: Callable[[], Any], *, done: Callable[[Any], str], object_id: str,
            object_repr: str, back: str) -> HttpResponseRedirect:
        """Run one operation; on success a message and a LogEntry, on a finejobs refusal a message (nothing was
        written). Then back to ``back``."""
        try:
            outcome = action()
        except FinejobsError as exc:
            messages.error(request, str(exc)[:500])
        else:
            text = done(outcome)
            self.log(request, object_id, object_repr, text)
            messages.success(request, text)
        return HttpResponseRedirect(back)

    def log(self, request: HttpRequest, object_id: str, object_repr: str, message: str) -> None:
        """The admin's history: one LogEntry (a change) for the action."""
        LogEntry.objects.create(user_id=request.user.pk, content_type=ContentType.objects.get_for_model(self.model),
                                object_id=object_id[:200], object_repr=object_repr[:200], action_flag=CHANGE,
                                change_message=message[:2000])


def post_text(request: HttpRequest, name: str, default: str = "") -> str:
    value = request.POST.get(name, default)
    return value.strip() if isinstance(value, str) else default
