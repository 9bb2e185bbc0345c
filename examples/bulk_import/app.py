"""The app: one job kind that reviews a claim and writes its decision to the app's own table."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from pydantic import BaseModel, Field

import finejobs

queue = finejobs.Queue()  # URL from FINEJOBS_DATABASE_URL (the demo configures it)

UNKNOWN_FACILITY = "FAC0000"  # claims from this facility cannot be reviewed: their jobs end failed

DECISIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS claim_decisions (group_id bigint NOT NULL, claim_id text NOT NULL, "
    "insuree text NOT NULL, facility text NOT NULL, amount numeric(12, 2) NOT NULL, decision text NOT NULL, "
    "decided_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (group_id, claim_id))",
    "CREATE INDEX IF NOT EXISTS claim_decisions_facility_idx ON claim_decisions (facility)",
    "CREATE INDEX IF NOT EXISTS claim_decisions_claim_idx ON claim_decisions (claim_id)",
)


class Claim(BaseModel):
    """One row of the CSV (strings from csv.DictReader are converted: amount to a number, the date to a date)."""

    claim_id: str = Field(min_length=1, max_length=40)
    insuree: str = Field(min_length=1, max_length=40)
    amount: Decimal = Field(ge=0, le=1_000_000, decimal_places=2)
    service_date: date
    facility: str = Field(min_length=1, max_length=20)
    procedure: str = Field(min_length=1, max_length=20)


class UnknownFacility(Exception):
    """The claim names a facility the insurer has no contract with."""


_engine: sa.Engine | None = None
_engine_lock = threading.Lock()


def engine() -> sa.Engine:
    """The app's own engine, on the queue's database (made on first use, in the process that uses it)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            # One statement a decision, in autocommit: one round trip (no BEGIN/COMMIT). Its commit does not
            # wait for the disk (synchronous_commit off): the job's success, committed by the worker after
            # the handler returns, does wait, and flushing the log up to it flushes this earlier insert too.
            # So a claim whose job succeeded has its decision on disk; a crash before that retries the job,
            # and the insert is idempotent. (Measured: 1.6k claims/s at concurrency 32 with a disk wait per
            # decision.)
            _engine = sa.create_engine(finejobs.store.normalize_url(queue.url), pool_size=32, max_overflow=0,
                                       isolation_level="AUTOCOMMIT",
                                       connect_args={"options": "-c synchronous_commit=off"})
        return _engine


def decide(claim: Claim) -> str:
    """The insurer's rules: small claims are approved, large ones referred to a person, a few denied."""
    if claim.procedure.startswith("X"):
        return "denied"
    if claim.amount >= 2_500:
        return "referred"
    return "approved"


@queue.job("claims.review", retry=finejobs.Retry(max_attempts=2, backoff=timedelta(milliseconds=50)),
           expires_in=timedelta(days=7))
def review_claim(claim: Claim, ctx: finejobs.JobContext) -> str:
    """Review one claim and record the decision (idempotent: a retried job writes the same row)."""
    if claim.facility == UNKNOWN_FACILITY:
        raise UnknownFacility(f"no contract with facility {claim.facility}")
    decision = decide(claim)
    with engine().connect() as conn:
        conn.execute(sa.text(
            "INSERT INTO claim_decisions (group_id, claim_id, insuree, facility, amount, decision) "
            "VALUES (:group_id, :claim_id, :insuree, :facility, :amount, :decision) "
            "ON CONFLICT (group_id, claim_id) DO NOTHING"),
            {"group_id": ctx.job.group_id or 0, "claim_id": claim.claim_id, "insuree": claim.insuree,
             "facility": claim.facility, "amount": claim.amount, "decision": decision})
    return decision
