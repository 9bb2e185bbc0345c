"""The renewals: every Monday at 06:00 (in RENEWALS_TIMEZONE) ``plan_renewals`` marks the policies coming due
and enqueues one ``renew_policy`` job per policy, in the same transaction; each renewal has its own retries
(the SMS gateway may time out) and must start before its policy lapses (its job's expires_at)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from renewals import gateway
from renewals.models import Policy

import finejobs
from finejobs.contrib.django import schedule, task

RENEWAL_RETRY = finejobs.Retry(max_attempts=3, backoff=timedelta(seconds=0.5), max_backoff=timedelta(seconds=5),
                               jitter=timedelta(0), on=(gateway.GatewayUnavailable,))


@task(queue_name="renewals", takes_context=True, retry=RENEWAL_RETRY, timeout=timedelta(minutes=1),
      unique_key=lambda policy_id: f"renew:{policy_id}")
def renew_policy(context: Any, policy_id: int) -> dict[str, Any]:
    """Renew one policy for a year and tell the insuree (a retry after a gateway timeout renews it again:
    the SMS is sent inside the renewal's transaction, so a failed attempt changes nothing)."""
    with transaction.atomic():
        policy = Policy.objects.select_for_update().select_related("insuree").get(pk=policy_id)
        if policy.status != Policy.Status.RENEWAL_QUEUED:
            return {"policy": policy_id, "renewed": False, "status": policy.status}
        policy.expiry_date += timedelta(days=365)
        policy.status = Policy.Status.RENEWED
        policy.renewed_at = timezone.now()
        policy.save(update_fields=["expiry_date", "status", "renewed_at"])
        gateway.send_sms(policy.insuree.phone, f"Your {policy.product} policy is renewed until {policy.expiry_date}",
                         attempt=context.attempt)
    return {"policy": policy_id, "renewed": True, "until": policy.expiry_date.isoformat()}


@task()
def plan_renewals() -> dict[str, int]:
    """Queue the renewal of every active policy that expires within RENEWALS_DUE_WITHIN: each policy is marked
    and its job written in one transaction (a job exists if and only if its policy says it was queued)."""
    zone = ZoneInfo(settings.RENEWALS_TIMEZONE)
    today = timezone.now().astimezone(zone).date()
    with transaction.atomic():
        due = list(Policy.objects.select_for_update(skip_locked=True)
                   .filter(status=Policy.Status.ACTIVE, expiry_date__gte=today,
                           expiry_date__lte=today + settings.RENEWALS_DUE_WITHIN).order_by("id"))
        now = timezone.now()
        for policy in due:
            lapses = datetime.combine(policy.expiry_date + timedelta(days=1), time(0), tzinfo=zone)
            result = renew_policy.using(expires_at=lapses).enqueue(policy.id)
            policy.status, policy.renewal_queued_at, policy.renewal_job = Policy.Status.RENEWAL_QUEUED, now, result.id
        Policy.objects.bulk_update(due, ["status", "renewal_queued_at", "renewal_job"])
    return {"queued": len(due)}


RENEWALS = schedule("policy-renewals", plan_renewals, finejobs.Cron("0 6 * * MON", tz=settings.RENEWALS_TIMEZONE),
                    description="Queue the renewal of the policies coming due")
