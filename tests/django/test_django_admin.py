"""The Django admin's finejobs pages through Django's test Client on the real database: jobs (filters, one job,
retry and cancel, bulk by filter), schedules (every operation), kinds and shards (pause, resume) and workers;
view-only users see and cannot act, each action writes a LogEntry and finejobs' audit entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import tasks_for_tests as t
from conftest import result_of, wait_until
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

import finejobs

BASE = "/admin/finejobs"


@pytest.fixture
def admin_client_(jobs_db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    return client


def staff(*codenames: str) -> Client:
    user = User.objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="finejobs", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def ops(backend: Any) -> finejobs.Admin:
    return finejobs.Admin(backend.queue, actor="test")


def later() -> Any:
    return timezone.now() + timedelta(hours=1)


def test_every_page_renders(admin_client_: Client, backend: Any) -> None:
    job = t.add.using(run_after=later()).enqueue(1, 2)
    for page in ("/admin/", f"{BASE}/", f"{BASE}/job/", f"{BASE}/job/{job.id}/change/", f"{BASE}/schedule/",
                 f"{BASE}/kind/", f"{BASE}/shard/", f"{BASE}/worker/", f"{BASE}/schedule/add/"):
        response = admin_client_.get(page)
        assert response.status_code == 200, page
    listing = admin_client_.get(f"{BASE}/job/").content.decode()
    assert f"{BASE}/job/{job.id}/change/" in listing and "tasks_for_tests.add" in listing
    detail = admin_client_.get(f"{BASE}/job/{job.id}/change/").content.decode()
    assert "&quot;args&quot;: [" in detail and "scheduled" in detail


def test_filters_by_state_kind_and_shard(admin_client_: Client, worker: Any) -> None:
    failed = t.fails.enqueue("boom")
    result_of(t.fails, failed.id)
    waiting = t.by_district.using(run_after=later()).enqueue(7)
    page = admin_client_.get(f"{BASE}/job/", {"state": "failed"}).content.decode()
    assert f"/job/{failed.id}/change/" in page and f"/job/{waiting.id}/change/" not in page
    query = {"shard": "district-7", "kind": t.by_district.module_path}
    page = admin_client_.get(f"{BASE}/job/", query).content.decode()
    assert f"/job/{waiting.id}/change/" in page and f"/job/{failed.id}/change/" not in page
    bad = admin_client_.get(f"{BASE}/job/", {"state": "bogus"}, follow=True)
    assert bad.status_code == 200 and "unknown state" in bad.content.decode()
    detail = admin_client_.get(f"{BASE}/job/{failed.id}/change/").content.decode()
    assert "ValueError" in detail and "Traceback" in detail


def test_retry_and_cancel_one_job_with_log_entries(admin_client_: Client, worker: Any, backend: Any) -> None:
    failed = t.fails.enqueue("boom")
    result_of(t.fails, failed.id)
    waiting = t.add.using(run_after=later()).enqueue(1, 1)
    response = admin_client_.post(f"{BASE}/job/act/", {"action": "cancel", "ids": [waiting.id]}, follow=True)
    assert "Cancel: 1 job(s)" in response.content.decode()
    assert t.add.get_result(waiting.id).status == "FAILED"
    worker.stop(timeout=10)
    admin_client_.post(f"{BASE}/job/act/", {"action": "retry", "ids": [failed.id]})
    assert backend.queue.get(int(failed.id)).state == finejobs.JobState.AVAILABLE
    entries = list(LogEntry.objects.order_by("id").values_list("object_id", "change_message", "user__username"))
    assert entries == [(waiting.id, "Cancel (finejobs)", "root"), (failed.id, "Retry (finejobs)", "root")]
    audit = ops(backend).audit(limit=5)
    assert [(a.actor, a.action) for a in reversed(audit)] == [("django:root", "cancel"), ("django:root", "retry")]
    refused = admin_client_.post(f"{BASE}/job/act/", {"action": "cancel", "ids": [waiting.id]}, follow=True)
    assert "cannot cancel" in refused.content.decode()


def test_bulk_actions_by_filter_confirm_first(admin_client_: Client, backend: Any) -> None:
    made = [t.add.using(run_after=later()).enqueue(i, i) for i in range(5)]
    other = t.echo.using(run_after=later()).enqueue(1)
    form = {"action": "cancel", "matching": "1", "kind": t.add.module_path}
    confirm = admin_client_.post(f"{BASE}/job/act/", form)
    assert confirm.status_code == 200 and "5 jobs would change" in confirm.content.decode()
    assert all(t.add.get_result(r.id).status == "READY" for r in made), "a dry run changes nothing"
    done = admin_client_.post(f"{BASE}/job/act/", {**form, "confirm": "1"}, follow=True)
    assert "5 of 5 changed" in done.content.decode()
    assert all(t.add.get_result(r.id).status == "FAILED" for r in made)
    assert t.echo.get_result(other.id).status == "READY"
    assert LogEntry.objects.get().object_repr == "jobs matching a filter"


def test_view_only_users_see_but_cannot_act(jobs_db: None, backend: Any) -> None:
    waiting = t.add.using(run_after=later()).enqueue(1, 1)
    viewer = staff("view_job", "view_schedule", "view_kind", "view_shard", "view_worker")
    page = viewer.get(f"{BASE}/job/")
    assert page.status_code == 200 and 'name="ids"' not in page.content.decode()
    assert viewer.post(f"{BASE}/job/act/", {"action": "cancel", "ids": [waiting.id]}).status_code == 403
    assert viewer.post(f"{BASE}/kind/act/", {"action": "pause", "name": "x"}).status_code == 403
    assert viewer.post(f"{BASE}/schedule/all/", {"action": "pause_all"}).status_code == 403
    assert viewer.get(f"{BASE}/schedule/add/").status_code == 403
    assert t.add.get_result(waiting.id).status == "READY"
    assert staff().get(f"{BASE}/job/").status_code == 403
    changer = staff("view_job", "change_job")
    assert changer.post(f"{BASE}/job/act/", {"action": "cancel", "ids": [waiting.id]}).status_code == 302
    assert t.add.get_result(waiting.id).status == "FAILED"
    assert changer.get(f"{BASE}/schedule/").status_code == 403
    assert LogEntry.objects.count() == 1


def test_every_schedule_operation(admin_client_: Client, backend: Any) -> None:
    form = {"name": "nightly", "kind": t.add.module_path, "rule": "cron", "rule_text": "0 6 * * MON",
            "timezone": "Africa/Dar_es_Salaam", "payload": '{"args": [1, 2], "kwargs": {}}', "description": "d",
            "shard": "", "priority": "", "misfire": "coalesce", "overlap": "skip", "expires_in": ""}
    bad = admin_client_.post(f"{BASE}/schedule/add/", {**form, "rule_text": "61 * * * *"})
    assert bad.status_code == 200 and "cron" in bad.content.decode()
    assert ops(backend).schedules.list() == []
    assert admin_client_.post(f"{BASE}/schedule/add/", form).status_code == 302
    schedule = ops(backend).schedules.get("nightly")
    assert schedule.next_fire_at is not None and schedule.next_fire_at.astimezone(
        __import__("zoneinfo").ZoneInfo("Africa/Dar_es_Salaam")).strftime("%a %H:%M") == "Mon 06:00"
    page = admin_client_.get(f"{BASE}/schedule/nightly/change/").content.decode()
    assert "Next fires" in page and "Mon" in page
    edit = admin_client_.get(f"{BASE}/schedule/nightly/edit/").content.decode()
    assert "0 6 * * MON" in edit
    admin_client_.post(f"{BASE}/schedule/nightly/edit/", {**form, "rule": "every", "rule_text": "3600"})
    assert ops(backend).schedules.get("nightly").rule_text.startswith("every")
    for action in ("pause", "resume", "skip_next", "run_now"):
        response = admin_client_.post(f"{BASE}/schedule/nightly/act/", {"action": action}, follow=True)
        assert response.status_code == 200 and "(finejobs)" in response.content.decode(), action
    assert ops(backend).schedules.runs("nightly")[0].state in ("available", "scheduled")
    admin_client_.post(f"{BASE}/schedule/all/", {"action": "pause_all"})
    assert ops(backend).schedules.get("nightly").paused
    admin_client_.post(f"{BASE}/schedule/all/", {"action": "resume_all"})
    assert not ops(backend).schedules.get("nightly").paused
    admin_client_.post(f"{BASE}/schedule/nightly/act/", {"action": "delete"})
    assert ops(backend).schedules.list() == []
    assert LogEntry.objects.count() == 9
    missing = admin_client_.post(f"{BASE}/schedule/nope/act/", {"action": "pause"}, follow=True)
    assert "nope" in missing.content.decode()


def test_pause_and_resume_kinds_and_shards(admin_client_: Client, backend: Any) -> None:
    t.by_district.using(run_after=later()).enqueue(4)
    kinds = admin_client_.get(f"{BASE}/kind/").content.decode()
    assert t.add.module_path in kinds
    admin_client_.post(f"{BASE}/kind/act/", {"action": "pause", "name": t.add.module_path, "reason": "deploy"})
    admin_client_.post(f"{BASE}/shard/act/", {"action": "pause", "name": "district-4"})
    paused = {(p.kind, p.shard, p.reason) for p in ops(backend).paused()}
    assert paused == {(t.add.module_path, None, "deploy"), (None, "district-4", None)}
    assert "deploy" in admin_client_.get(f"{BASE}/kind/").content.decode()
    assert "district-4" in admin_client_.get(f"{BASE}/shard/").content.decode()
    admin_client_.post(f"{BASE}/kind/act/", {"action": "resume", "name": t.add.module_path})
    admin_client_.post(f"{BASE}/shard/act/", {"action": "resume", "name": "district-4"})
    assert ops(backend).paused() == []
    bad = admin_client_.post(f"{BASE}/shard/act/", {"action": "pause", "name": "Not A Shard"}, follow=True)
    assert "shard" in bad.content.decode() and ops(backend).paused() == []
    assert LogEntry.objects.count() == 4


def test_the_workers_page_lists_the_registry(admin_client_: Client, backend: Any) -> None:
    runner = backend.queue.worker(poll_interval=0.05, run_scheduler=False, worker_id="admin-test-worker").start()
    try:
        wait_until(lambda: ops(backend).workers(), what="the worker to register")
        assert "admin-test-worker" in admin_client_.get(f"{BASE}/worker/").content.decode()
    finally:
        runner.stop(timeout=10)
