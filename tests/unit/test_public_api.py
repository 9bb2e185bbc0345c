"""The public API: what ``import finejobs`` offers, and the JobState contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

import finejobs
from finejobs import JobState
from finejobs.jobs import FINAL_STATES, UNFINISHED_STATES, Job

T = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_all_is_sorted() -> None:
    assert finejobs.__all__ == sorted(finejobs.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(finejobs.__all__) == len(set(finejobs.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in finejobs.__all__ if not hasattr(finejobs, name)]
    assert missing == []


def test_every_public_class_of_the_package_is_in_all() -> None:
    exported = {
        name for name, value in vars(finejobs).items()
        if not name.startswith("_") and isinstance(value, type)
    }
    assert exported <= set(finejobs.__all__)


@pytest.mark.parametrize(
    "name",
    [
        "Queue", "Retry", "Cancel", "Snooze", "JobState", "Job", "JobContext", "JobKind", "JobSpec",
        "PayloadError", "UnknownKindError", "InvalidJobOptions", "EnqueueError", "FinejobsError",
        "SchemaError", "DatabaseUnavailable", "ConfigurationError", "JobNotFound", "Worker",
        "WorkerCrashed", "AttemptError", "Stats", "Group", "GroupProgress", "Callback", "GroupNotFound", "Pipeline",
        "PipelineRun", "StepContext", "PipelineInfo", "PipelineNotFound", "ImportResult",
    ],
)
def test_documented_names_are_exported(name: str) -> None:
    assert name in finejobs.__all__
    assert isinstance(getattr(finejobs, name), type)


def test_version_is_a_version_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", finejobs.__version__)


def test_error_tree() -> None:
    for error in (finejobs.ConfigurationError, finejobs.DatabaseUnavailable, finejobs.SchemaError,
                  finejobs.EnqueueError, finejobs.JobNotFound, finejobs.WorkerCrashed):
        assert issubclass(error, finejobs.FinejobsError)
    for error in (finejobs.PayloadError, finejobs.UnknownKindError, finejobs.InvalidJobOptions):
        assert issubclass(error, finejobs.EnqueueError)
        assert issubclass(error, ValueError)
    assert issubclass(finejobs.JobNotFound, LookupError)


def test_cancel_and_snooze_are_signals_not_finejobs_errors() -> None:
    assert not issubclass(finejobs.Cancel, finejobs.FinejobsError)
    assert not issubclass(finejobs.Snooze, finejobs.FinejobsError)
    assert issubclass(finejobs.Cancel, Exception) and issubclass(finejobs.Snooze, Exception)


# ---------------------------------------------------------------- JobState


def test_job_state_values() -> None:
    assert {s.value for s in JobState} == {
        "scheduled", "available", "running", "succeeded", "failed", "expired", "cancelled"}


def test_final_states() -> None:
    assert {s.value for s in FINAL_STATES} == {"succeeded", "failed", "expired", "cancelled"}
    assert all(s.is_final for s in FINAL_STATES)


def test_unfinished_states() -> None:
    assert {s.value for s in UNFINISHED_STATES} == {"scheduled", "available", "running"}
    assert not any(s.is_final for s in UNFINISHED_STATES)


def test_every_state_is_final_or_unfinished_never_both() -> None:
    assert set(JobState) == FINAL_STATES | UNFINISHED_STATES
    assert not FINAL_STATES & UNFINISHED_STATES


def test_job_state_prints_as_its_value() -> None:
    assert str(JobState.AVAILABLE) == "available"
    assert f"{JobState.SUCCEEDED}" == "succeeded"
    assert JobState("failed") is JobState.FAILED
    assert JobState.RUNNING == "running"


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 1, "kind": "k", "shard": "default", "payload": {"a": 1}, "state": "available", "priority": 0,
        "run_at": T, "expires_at": None, "attempt": 0, "max_attempts": 3, "unique_key": None,
        "lease_owner": None, "lease_expires_at": None, "errors": [], "created_at": T, "started_at": None,
        "finished_at": None,
    }
    base.update(changes)
    return base


def test_job_from_row_tells_scheduled_from_available() -> None:
    assert Job.from_row(row(), now=T).state is JobState.AVAILABLE
    assert Job.from_row(row(), now=T.replace(hour=7)).state is JobState.SCHEDULED
    assert Job.from_row(row(state="running"), now=T.replace(hour=7)).state is JobState.RUNNING


def test_job_is_frozen() -> None:
    job = Job.from_row(row(), now=T)
    with pytest.raises(AttributeError):
        job.state = JobState.FAILED  # type: ignore[misc]


def test_job_to_json_is_json_ready() -> None:
    import json

    error = {"attempt": 1, "at": T.isoformat(), "error": "ValueError", "message": "m",
             "traceback": None, "worker": "w"}
    job = Job.from_row(row(state="failed", errors=[error], finished_at=T), now=T)
    data = json.loads(json.dumps(job.to_json()))
    assert data["state"] == "failed"
    assert data["errors"] == [error]
    assert data["run_at"] == T.isoformat()
    assert data["expires_at"] is None
