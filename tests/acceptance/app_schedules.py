"""An app with schedules declared in code, for the CLI acceptance tests of ``finejobs schedules``."""

from __future__ import annotations

from datetime import timedelta

import pydantic

import finejobs

queue = finejobs.Queue()


class Renewal(pydantic.BaseModel):
    region: str


@queue.job("renew.policies", schedule=finejobs.Every(timedelta(seconds=1)))
def renew(payload: dict[str, object]) -> None:
    """Runs every second (declared with @queue.job(schedule=...))."""


@queue.job("renew.region", model=Renewal)
def renew_region(payload: Renewal) -> object:
    """Nothing to do: says so."""
    return finejobs.Idle


queue.schedule("weekly-renewals", renew_region, finejobs.Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"),
               payload={"region": "north"}, description="the insurance renewal run")
