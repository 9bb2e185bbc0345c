"""The pages of job kinds and shards (counts by state, pause and resume: every worker of every process stops
claiming within about a second) and of workers (the registry: alive ones first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from finejobs.contrib.django.admin_base import OperationsAdmin, post_text


class _Pausable(OperationsAdmin):
    target = ""  # "kind" or "shard"

    def pages(self) -> list[tuple[str, Callable[..., HttpResponse], str]]:
        return [("", self.list_view, "changelist"), ("act/", self.act_view, "act")]

    def rows(self, request: HttpRequest) -> list[dict[str, Any]]:
        raise NotImplementedError

    def list_view(self, request: HttpRequest) -> HttpResponse:
        self.viewing(request)
        return self.render(request, "pausable.html", self.opts.verbose_name_plural.capitalize(),
                           rows=self.rows(request), target=self.target)

    def act_view(self, request: HttpRequest) -> HttpResponse:
        """POST: action=pause|resume, name=<kind or shard>, reason=..."""
        self.changing(request)
        ops = self.operations(request)
        action, name = post_text(request, "action"), post_text(request, "name")
        reason = post_text(request, "reason") or None
        target = {self.target: name or None}

        def run() -> Any:
            if action == "pause":
                return ops.pause(**target, reason=reason)
            if action == "resume":
                return ops.resume(**target)
            raise ValueError(action)

        def done(outcome: Any) -> str:
            if action == "resume" and outcome is False:
                return f"{self.target} {name} was not paused: nothing changed"
            return f"{'Paused' if action == 'pause' else 'Resumed'} {self.target} {name} (finejobs)"

        if action not in ("pause", "resume"):
            messages.error(request, f"unknown action {action[:40]!r}")
            return HttpResponseRedirect(self.url("changelist"))
        return self.act(request, run, done=done, object_id=name, object_repr=f"{self.target} {name}",
                        back=self.url("changelist"))


class KindAdmin(_Pausable):
    target = "kind"

    def rows(self, request: HttpRequest) -> list[dict[str, Any]]:
        ops = self.operations(request)
        stats = ops.stats()
        paused = {p.kind: p for p in stats.paused if p.kind is not None and p.shard is None}
        declared = {k.name: k for k in ops.kinds()}
        return [{"name": name, "info": declared.get(name), "paused": paused.get(name),
                 "counts": {s: n for s, n in stats.by_kind.get(name, {}).items() if n}}
                for name in sorted(set(declared) | set(stats.by_kind))]


class ShardAdmin(_Pausable):
    target = "shard"

    def rows(self, request: HttpRequest) -> list[dict[str, Any]]:
        ops = self.operations(request)
        stats = ops.stats()
        paused = {p.shard: p for p in stats.paused if p.shard is not None and p.kind is None}
        return [{"name": s.name, "info": s, "counts": s.counts, "paused": paused.get(s.name),
                 "lag": stats.lag_seconds.get(s.name)} for s in ops.shards()]


class WorkerAdmin(OperationsAdmin):
    def pages(self) -> list[tuple[str, Callable[..., HttpResponse], str]]:
        return [("", self.list_view, "changelist")]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def list_view(self, request: HttpRequest) -> HttpResponse:
        self.viewing(request)
        return self.render(request, "workers.html", "Workers", workers=self.operations(request).workers())
