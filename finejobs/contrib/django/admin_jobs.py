"""The jobs pages: the list (filters by state, kind, shard and error text, keyset pages, counts), one job (its
payload, errors with tracebacks, return value), and the actions retry and cancel, on the jobs ticked or on
every job matching the filter (shown first as a dry run, then done in batches by finejobs.Admin)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

import finejobs
from finejobs.contrib.django.admin_base import OperationsAdmin, post_text
from finejobs.errors import FinejobsError
from finejobs.jobs import JobState

PAGE = 50
ACTIONS = {"retry": "Retry", "cancel": "Cancel"}


def job_filter(data: Any) -> finejobs.JobFilter:
    """The filter of the list's query (or of a bulk action's form); bad values raise InvalidJobOptions."""
    names = ("state", "kind", "shard", "error")
    values: dict[str, Any] = {name: (data.get(name) or "").strip() or None for name in names}
    return finejobs.JobFilter(**values)


def filter_query(filt: finejobs.JobFilter) -> dict[str, str]:
    return {name: str(value) for name, value in
            (("state", filt.state.value if filt.state else None), ("kind", filt.kind), ("shard", filt.shard),
             ("error", filt.error)) if value}


class JobAdmin(OperationsAdmin):
    def pages(self) -> list[tuple[str, Callable[..., HttpResponse], str]]:
        return [("", self.list_view, "changelist"), ("act/", self.act_view, "act"),
                ("<int:job_id>/change/", self.job_view, "change"), ("<int:job_id>/", self.job_view, "detail")]

    def list_view(self, request: HttpRequest) -> HttpResponse:
        self.viewing(request)
        ops = self.operations(request)
        try:
            filt = job_filter(request.GET)
            page = ops.jobs(filt, cursor=request.GET.get("cursor") or None, limit=PAGE)
            count = ops.count(filt)
        except FinejobsError as exc:
            messages.error(request, str(exc)[:500])
            filt, page, count = finejobs.JobFilter(), ops.jobs(limit=PAGE), ops.count()
        stats = ops.stats()
        kinds = sorted({k.name for k in ops.kinds()} | set(stats.by_kind))
        shards = sorted({s.name for s in ops.shards()})
        query = filter_query(filt)
        return self.render(request, "jobs.html", "Jobs", page=page, count=count, filt=query,
                           states=[(s.value, stats.by_state.get(s.value, 0)) for s in JobState], kinds=kinds,
                           shards=shards,
                           next_query={**query, "cursor": page.next_cursor} if page.next_cursor else None,
                           actions=ACTIONS)

    def job_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        self.viewing(request)
        try:
            job = self.operations(request).job(job_id)
        except FinejobsError as exc:
            messages.error(request, str(exc)[:500])
            return HttpResponseRedirect(self.url("changelist"))
        return self.render(request, "job.html", f"Job {job.id}", job=job,
                           payload=json.dumps(job.payload, indent=2, ensure_ascii=False),
                           return_value=None if job.return_value is None else
                           json.dumps(job.return_value, indent=2, ensure_ascii=False),
                           errors=list(reversed(job.errors)), actions=ACTIONS)

    def act_view(self, request: HttpRequest) -> HttpResponse:
        """POST: action=retry|cancel, with ``ids`` (the jobs ticked, or the one job) or ``matching=1`` and the
        filter (a dry run first; ``confirm=1`` does it)."""
        self.changing(request)
        ops = self.operations(request)
        action = post_text(request, "action")
        back = post_text(request, "back") or self.url("changelist")
        if not back.startswith("/"):
            back = self.url("changelist")
        if action not in ACTIONS:
            messages.error(request, f"unknown action {action[:40]!r}")
            return HttpResponseRedirect(back)
        if post_text(request, "matching"):
            return self._matching(request, ops, action, back)
        ids = [value for value in request.POST.getlist("ids") if value.isdigit()]
        if not ids:
            messages.warning(request, "no job was selected: nothing was done")
            return HttpResponseRedirect(back)
        one: Callable[[int], Any] = ops.retry if action == "retry" else ops.cancel
        done, refused = [], []
        for job_id in ids:
            try:
                one(int(job_id))
                done.append(job_id)
            except FinejobsError as exc:
                refused.append(f"job {job_id}: {exc}"[:200])
        for job_id in done:
            self.log(request, job_id, f"job {job_id}", f"{ACTIONS[action]} (finejobs)")
        if done:
            messages.success(request, f"{ACTIONS[action]}: {len(done)} job(s) ({', '.join(done[:20])})")
        for text in refused[:10]:
            messages.error(request, text)
        return HttpResponseRedirect(back)

    def _matching(self, request: HttpRequest, ops: finejobs.Admin, action: str, back: str) -> HttpResponse:
        try:
            filt = job_filter(request.POST)
            bulk = ops.retry_matching if action == "retry" else ops.cancel_matching
            if not post_text(request, "confirm"):
                dry = bulk(filt, dry_run=True)
                return self.render(request, "confirm.html", f"{ACTIONS[action]} every matching job", dry=dry,
                                   action=action, label=ACTIONS[action], filt=filter_query(filt), back=back)
            result = bulk(filt)
        except FinejobsError as exc:
            messages.error(request, str(exc)[:500])
            return HttpResponseRedirect(back)
        text = (f"{ACTIONS[action]} every job matching {json.dumps(filter_query(filt))}: "
                f"{result.changed} of {result.matched} changed (finejobs)")
        self.log(request, "", "jobs matching a filter", text)
        messages.success(request, text)
        return HttpResponseRedirect(back)
