"""The schedules pages: every operation of ``queue.schedules`` through finejobs.Admin (audited there, and in
the admin's LogEntry): list and search, one schedule (its rule in words, the next fires, its runs), add, edit,
delete, pause, resume, pause all, resume all, run now, skip the next tick.

A rule is written as on the command line: ``cron`` (``0 6 * * MON``), ``rrule`` (``FREQ=WEEKLY;BYDAY=MO``),
``every`` (seconds), ``daily-at`` (``06:00 18:30``) or ``once`` (an ISO time with its offset), in a time zone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

import finejobs
from finejobs.contrib.django.admin_base import OperationsAdmin, post_text
from finejobs.errors import FinejobsError, InvalidJobOptions
from finejobs.scheduler import MISFIRES, OVERLAPS

RULES = ("cron", "rrule", "every", "daily-at", "once")
NAME_ACTIONS = {"pause": "Pause", "resume": "Resume", "run_now": "Run now", "skip_next": "Skip the next tick",
                "delete": "Delete"}


def make_rule(kind: str, text: str, tz: str) -> finejobs.Rule:
    """A rule from the form's words (InvalidJobOptions naming what is wrong)."""
    text = text.strip()
    if kind == "cron":
        return finejobs.Cron(text, tz=tz)
    if kind == "rrule":
        return finejobs.RRule(text, tz=tz)
    if kind == "every":
        try:
            seconds = float(text)
        except ValueError:
            raise InvalidJobOptions(f"every: {text[:40]!r} is not a number of seconds") from None
        return finejobs.Every(seconds=seconds, tz=tz)
    if kind == "daily-at":
        return finejobs.DailyAt(*text.replace(",", " ").split(), tz=tz)
    if kind == "once":
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidJobOptions(f"once: {text[:60]!r} is not an ISO time such as 2026-12-01T06:00+03:00") from None
        return finejobs.Once(at)
    raise InvalidJobOptions(f"rule: one of {', '.join(RULES)}, not {kind[:20]!r}")


class ScheduleForm(forms.Form):  # type: ignore[misc]
    name = forms.CharField(max_length=200)
    kind = forms.CharField(max_length=200, help_text="the job kind (a Django task's module path)")
    rule = forms.ChoiceField(choices=[(r, r) for r in RULES])
    rule_text = forms.CharField(label="rule", max_length=2000, help_text="0 6 * * MON · FREQ=WEEKLY;BYDAY=MO · 3600 · "
                                "06:00 18:30 · 2026-12-01T06:00+03:00")
    timezone = forms.CharField(max_length=64, initial="UTC")
    payload = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                              help_text='JSON; for a Django task {"args": [...], "kwargs": {...}}', initial="{}")
    description = forms.CharField(max_length=2000, required=False)
    shard = forms.CharField(max_length=63, required=False)
    priority = forms.IntegerField(required=False)
    misfire = forms.ChoiceField(choices=[(m, m) for m in MISFIRES], initial="coalesce")
    overlap = forms.ChoiceField(choices=[(o, o) for o in OVERLAPS], initial="skip")
    expires_in = forms.FloatField(required=False, min_value=0.001, help_text="seconds a run may wait to start")

    def options(self) -> tuple[finejobs.Rule, Any, dict[str, Any]]:
        data = self.cleaned_data
        rule = make_rule(data["rule"], data["rule_text"], data["timezone"])
        try:
            payload = json.loads(data["payload"] or "{}")
        except ValueError as exc:
            raise InvalidJobOptions(f"payload: not JSON ({exc})") from None
        options: dict[str, Any] = {"description": data["description"], "misfire": data["misfire"],
                                   "overlap": data["overlap"]}
        if data["shard"]:
            options["shard"] = data["shard"]
        if data["priority"] is not None:
            options["priority"] = data["priority"]
        if data["expires_in"]:
            options["expires_in"] = timedelta(seconds=data["expires_in"])
        return rule, payload, options


def initial_of(schedule: finejobs.Schedule) -> dict[str, Any]:
    spec = schedule.rule.to_spec() if schedule.rule is not None else {}
    kind = str(spec.get("type", "cron")).replace("daily_at", "daily-at")
    text = spec.get("expr") or spec.get("text") or spec.get("rrule") or ""
    if kind == "every":
        text = str(spec.get("seconds", ""))
    elif kind == "daily-at":
        text = " ".join(spec.get("times", []))
    elif kind == "once":
        text = spec.get("at", "")
    return {"name": schedule.name, "kind": schedule.kind, "rule": kind if kind in RULES else "cron",
            "rule_text": text, "timezone": schedule.timezone, "payload": json.dumps(schedule.payload),
            "description": schedule.description, "shard": schedule.shard, "priority": schedule.priority,
            "misfire": schedule.misfire, "overlap": schedule.overlap,
            "expires_in": schedule.expires_in.total_seconds() if schedule.expires_in else None}


class ScheduleAdmin(OperationsAdmin):
    def pages(self) -> list[tuple[str, Callable[..., HttpResponse], str]]:
        return [("", self.list_view, "changelist"), ("add/", self.form_view, "add"), ("all/", self.all_view, "all"),
                ("<path:name>/edit/", self.form_view, "edit"), ("<path:name>/act/", self.act_view, "act"),
                ("<path:name>/change/", self.detail_view, "change")]

    def list_view(self, request: HttpRequest) -> HttpResponse:
        self.viewing(request)
        search = (request.GET.get("q") or "").strip() or None
        try:
            found = self.operations(request).schedules.list(search=search)
        except FinejobsError as exc:
            messages.error(request, str(exc)[:500])
            found = []
        return self.render(request, "schedules.html", "Schedules", schedules=found, q=search or "")

    def detail_view(self, request: HttpRequest, name: str) -> HttpResponse:
        self.viewing(request)
        schedules = self.operations(request).schedules
        try:
            schedule = schedules.get(name)
            runs = schedules.runs(name, limit=20)
        except FinejobsError as exc:
            messages.error(request, str(exc)[:500])
            return HttpResponseRedirect(self.url("changelist"))
        return self.render(request, "schedule.html", f"Schedule {name}", schedule=schedule, runs=runs,
                           fires=schedule.next_fires(10), payload=json.dumps(schedule.payload, ensure_ascii=False),
                           actions=NAME_ACTIONS)

    def form_view(self, request: HttpRequest, name: str | None = None) -> HttpResponse:
        schedules = self.operations(request).schedules
        current = None
        if name is not None:
            self.viewing(request)
            try:
                current = schedules.get(name)
            except FinejobsError as exc:
                messages.error(request, str(exc)[:500])
                return HttpResponseRedirect(self.url("changelist"))
        if request.method != "POST":
            if not self.has_change_permission(request):
                self.changing(request)
            form = ScheduleForm(initial=initial_of(current) if current else {})
            return self.render(request, "schedule_form.html", f"Edit {name}" if name else "Add a schedule",
                               form=form, editing=name)
        self.changing(request)
        form = ScheduleForm(request.POST)
        if form.is_valid():
            try:
                rule, payload, options = form.options()
                data = form.cleaned_data
                if current is None:
                    made = schedules.add(data["name"], data["kind"], rule, payload=payload, **options)
                    verb = "Added"
                else:
                    made = schedules.update(current.name, kind=data["kind"], rule=rule, payload=payload, **options)
                    verb = "Changed"
            except FinejobsError as exc:
                form.add_error(None, str(exc)[:500])
            else:
                text = f"{verb} schedule {made.name}: {made.rule_text} (finejobs)"
                self.log(request, made.name, f"schedule {made.name}", text)
                messages.success(request, text)
                return HttpResponseRedirect(self.url("change", made.name))
        return self.render(request, "schedule_form.html", f"Edit {name}" if name else "Add a schedule",
                           form=form, editing=name)

    def act_view(self, request: HttpRequest, name: str) -> HttpResponse:
        self.changing(request)
        schedules = self.operations(request).schedules
        action = post_text(request, "action")
        back = self.url("changelist") if action == "delete" else self.url("change", name)
        if action not in NAME_ACTIONS:
            messages.error(request, f"unknown action {action[:40]!r}")
            return HttpResponseRedirect(back)
        calls: dict[str, Callable[[], Any]] = {
            "pause": lambda: schedules.pause(name), "resume": lambda: schedules.resume(name),
            "run_now": lambda: schedules.run_now(name, force=bool(post_text(request, "force"))),
            "skip_next": lambda: schedules.skip_next(name), "delete": lambda: schedules.delete(name)}

        def done(outcome: Any) -> str:
            extra = f": job {outcome}" if action == "run_now" else ""
            return f"{NAME_ACTIONS[action]} schedule {name}{extra} (finejobs)"

        return self.act(request, calls[action], done=done, object_id=name,
                        object_repr=f"schedule {name}", back=back)

    def all_view(self, request: HttpRequest) -> HttpResponse:
        """POST: action=pause_all|resume_all, optionally for one kind."""
        self.changing(request)
        schedules = self.operations(request).schedules
        action, kind = post_text(request, "action"), post_text(request, "kind") or None
        if action not in ("pause_all", "resume_all"):
            messages.error(request, f"unknown action {action[:40]!r}")
            return HttpResponseRedirect(self.url("changelist"))
        call = schedules.pause_all if action == "pause_all" else schedules.resume_all
        verb = "Paused" if action == "pause_all" else "Resumed"
        return self.act(request, lambda: call(kind=kind),
                        done=lambda names: f"{verb} {len(names)} schedule(s){f' of kind {kind}' if kind else ''} "
                                           "(finejobs)",
                        object_id="", object_repr="every schedule", back=self.url("changelist"))

