"""The app's job kinds: what a hospital system would import. One alert job per patient dose."""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from pydantic import BaseModel

import finejobs

queue = finejobs.Queue()  # URL from FINEJOBS_DATABASE_URL (the demo configures it)


class DosageAlert(BaseModel):
    patient_id: int
    district: int
    dose_at: datetime
    dose: str
    channel: Literal["sms", "ivr"]
    phone: str


class GatewayError(Exception):
    """The gateway refused or failed the request; worth retrying."""


_client = httpx.Client(timeout=2.0)


@queue.job(
    "dosage.alert",
    retry=finejobs.Retry(max_attempts=5, backoff=timedelta(milliseconds=200), max_backoff=timedelta(seconds=3),
                         on=(GatewayError, httpx.TransportError)),
    expires_in=timedelta(hours=1),
    timeout=timedelta(seconds=10),
    shard_by="district",  # {"district": 3, ...} -> shard "district-3": one slice per district
)
def send_alert(alert: DosageAlert) -> None:
    """Send one reminder through the gateway, by the patient's preferred channel."""
    gateway = os.environ["DOSAGE_GATEWAY_URL"]
    text = f"Reminder: take {alert.dose} at {alert.dose_at:%H:%M}."
    response = _client.post(f"{gateway}/{alert.channel}", json={"to": alert.phone, "text": text})
    if response.status_code >= 500:
        raise GatewayError(f"gateway answered {response.status_code}: {response.text.strip()}")
    if response.status_code >= 400:
        raise finejobs.Cancel(f"gateway refused the alert ({response.status_code}): {response.text.strip()}")


def alert_key(patient_id: int, dose_at: datetime) -> str:
    """One alert per patient and dose time: planning twice creates nothing new."""
    return f"dose:{patient_id}:{dose_at.isoformat()}"


def shard_for(district: int) -> str:
    """The shard send_alert's routing rule gives a district's alerts (for workers and reports)."""
    return send_alert.shard_for({"district": district})


def plan_alerts(engine: sa.Engine, now: datetime) -> list[finejobs.Job]:
    """Enqueue one alert per dose due within the next hour, in one transaction with the app's own rows.

    Planning twice is harmless: a dose is marked planned (``alert_planned_for``) in the same transaction
    that enqueues its alert, so either both happen or neither; the unique key also stops two planners
    running at once from making two alerts. (A unique key alone would not do: it is held only while its job
    is unfinished, and an alert already sent must not be sent again.) The expiry (dose time + 1 h) means an
    alert that cannot go out in time is not sent at night: it ends ``expired``.
    """
    with engine.begin() as conn:
        doses = conn.execute(sa.text(
            "SELECT id, district, phone, channel, dose, dose_at FROM demo_patients "
            "WHERE dose_at > :now - interval '1 hour' AND dose_at <= :now + interval '1 hour' "
            "AND alert_planned_for IS DISTINCT FROM dose_at ORDER BY id FOR UPDATE SKIP LOCKED"
        ), {"now": now}).all()
        specs = [
            finejobs.JobSpec(
                DosageAlert(patient_id=d.id, district=d.district, dose_at=d.dose_at, dose=d.dose,
                            channel=d.channel, phone=d.phone),
                unique_key=alert_key(d.id, d.dose_at),
                run_at=now,
                expires_at=d.dose_at + timedelta(hours=1),
            )
            for d in doses
        ]
        jobs = send_alert.enqueue_many(specs, conn=conn)
        conn.execute(sa.text("UPDATE demo_patients SET alert_planned_for = dose_at WHERE id = ANY(:ids)"),
                     {"ids": [d.id for d in doses]})
        return jobs


@functools.cache
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(finejobs.store.normalize_url(url), pool_size=2)


@queue.job("dosage.plan", retry=finejobs.Retry(max_attempts=3, backoff=timedelta(seconds=1),
                                               max_backoff=timedelta(seconds=10)))
def plan_next_hour(payload: dict[str, Any]) -> None:
    """The hourly planner: one alert job per dose due in the next hour."""
    plan_alerts(_engine(queue.url), datetime.now(UTC))


# Every hour, on the hour, the planner runs once, however many workers are up.
queue.schedule("dosage-planner", plan_next_hour, finejobs.Every(hours=1),
               description="plan the next hour's dosage alerts")
