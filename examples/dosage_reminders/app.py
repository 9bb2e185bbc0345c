"""The app's job kinds: what a hospital system would import. One alert job per patient dose."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Literal

import httpx
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
    return f"district-{district}"
