"""The example project end to end (examples/django_renewals): the weekly schedule (Monday 06:00 in the scheme's
time zone) run now, one renewal job per policy due written in the transaction that marks it queued, a renewal
retried after a gateway timeout, a renewal that could not start before its policy lapsed, the admin."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import result_of, wait_until
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

import finejobs
from finejobs.contrib.django import JobExpired


@pytest.fixture
def scheme(jobs_db: None) -> dict[str, Any]:
    from renewals import gateway
    from renewals.models import Insuree, Policy

    gateway.SENT.clear()
    today = timezone.now().astimezone(ZoneInfo(settings.RENEWALS_TIMEZONE)).date()
    made: dict[str, Any] = {}
    for i, (phone, expires_in_days) in enumerate([("255700000001", 3), ("255700000002", 10), ("255700000010", 20),
                                                  ("255700000003", 29), ("255700000004", 90), ("255700000005", -5)]):
        insuree = Insuree.objects.create(chf_id=f"CHF{i:05d}", last_name=f"Mushi{i}", other_names="Asha", phone=phone)
        made[phone] = Policy.objects.create(insuree=insuree, product="CHF-BASIC", start_date=date(2025, 1, 1),
                                            expiry_date=today + timedelta(days=expires_in_days))
    return made


def test_the_weekly_renewals_end_to_end(scheme: dict[str, Any], backend: Any) -> None:
    from renewals import gateway
    from renewals.models import Policy
    from renewals.tasks import plan_renewals, renew_policy

    ops = finejobs.Admin(backend.queue, actor="test")
    backend.queue.schedules.sync()  # what a worker does when it starts
    schedule = ops.schedules.get("policy-renewals")
    local = schedule.next_fire_at.astimezone(ZoneInfo("Africa/Dar_es_Salaam"))
    assert (local.strftime("%A %H:%M"), schedule.kind) == ("Monday 06:00", plan_renewals.module_path)

    runner = backend.queue.worker(concurrency=4, poll_interval=0.05, run_scheduler=False, register=False).start()
    try:
        job_id = ops.schedules.run_now("policy-renewals")
        planned = result_of(plan_renewals, str(job_id))
        assert planned.status == "SUCCESSFUL" and planned.return_value == {"queued": 4}
        queued = list(Policy.objects.exclude(renewal_job="").order_by("id"))
        assert [p.insuree.phone for p in queued] == ["255700000001", "255700000002", "255700000010", "255700000003"]
        results = {p.insuree.phone: result_of(renew_policy, p.renewal_job) for p in queued}
    finally:
        runner.stop(timeout=10)
    assert all(r.status == "SUCCESSFUL" for r in results.values())
    retried = results["255700000010"]
    assert retried.attempts == 2 and retried.errors[0].exception_class is gateway.GatewayUnavailable
    assert {r.attempts for phone, r in results.items() if phone != "255700000010"} == {1}
    for policy in Policy.objects.filter(pk__in=[p.pk for p in queued]):
        assert policy.status == Policy.Status.RENEWED
        assert policy.expiry_date == scheme[policy.insuree.phone].expiry_date + timedelta(days=365)
    assert Policy.objects.get(pk=scheme["255700000004"].pk).status == Policy.Status.ACTIVE  # not due
    assert Policy.objects.get(pk=scheme["255700000005"].pk).status == Policy.Status.ACTIVE  # lapsed already
    assert sorted(phone for phone, _ in gateway.SENT) == sorted(results)
    job = backend.queue.get(int(results["255700000001"].id))
    assert job.unique_key == f"renew:{queued[0].pk}" and job.shard == "renewals" and job.expires_at is not None

    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.org", "pw"))
    page = client.get("/admin/finejobs/job/", {"kind": renew_policy.module_path}).content.decode()
    assert all(f"/admin/finejobs/job/{r.id}/change/" in page for r in results.values())
    assert "policy-renewals" in client.get("/admin/finejobs/schedule/").content.decode()
    assert client.get("/admin/renewals/policy/").status_code == 200


def test_a_renewal_that_cannot_start_before_the_policy_lapses_expires(scheme: dict[str, Any], backend: Any) -> None:
    from renewals.models import Policy
    from renewals.tasks import renew_policy

    ops = finejobs.Admin(backend.queue, actor="test")
    policy = scheme["255700000001"]
    ops.pause(shard="renewals", reason="gateway maintenance")
    runner = backend.queue.worker(poll_interval=0.05, run_scheduler=False, register=False).start()
    try:
        Policy.objects.filter(pk=policy.pk).update(status=Policy.Status.RENEWAL_QUEUED)
        result = renew_policy.using(expires_at=timezone.now() + timedelta(seconds=0.5)).enqueue(policy.pk)
        deadline = backend.queue.get(int(result.id)).expires_at
        wait_until(lambda: timezone.now() > deadline, what="the deadline")
        ops.resume(shard="renewals")
        done = result_of(renew_policy, result.id)
    finally:
        runner.stop(timeout=10)
    assert done.status == "FAILED" and done.errors[-1].exception_class is JobExpired
    assert Policy.objects.get(pk=policy.pk).status == Policy.Status.RENEWAL_QUEUED  # left for the next planning
