"""Every exception finejobs raises, in one tree.

```
FinejobsError                      base of everything below
├── ConfigurationError             bad database URL, bad --app path, missing settings
├── DatabaseUnavailable            the database cannot be reached (after bounded retries)
├── SchemaError                    the schema is not migrated, or was migrated by a newer finejobs
├── EnqueueError (ValueError)      a job was refused at enqueue; nothing was written
│   ├── PayloadError               the payload failed validation (``.fields`` names each bad field)
│   ├── UnknownKindError           no job kind of that name is registered on the queue
│   └── InvalidJobOptions          naive datetimes, times out of range, bad priority, bad options
│                                  (also at declaration: @queue.job(...), Retry(...), schedules)
├── JobNotFound (LookupError)      no job with that id
└── ScheduleNotFound (LookupError) no schedule with that name or id (finejobs.scheduler)

Control flow raised *by handlers* (not errors):
Cancel(reason)                     end the job as cancelled
Snooze(delay)                      run it again after ``delay`` without counting an attempt
```
"""

from __future__ import annotations

from datetime import timedelta


class FinejobsError(Exception):
    """Base class of every finejobs error."""


class ConfigurationError(FinejobsError):
    """finejobs is configured wrongly (database URL, --app path, options)."""


class DatabaseUnavailable(FinejobsError):
    """The database could not be reached."""


class SchemaError(FinejobsError):
    """The database schema is missing, incomplete, or newer than this finejobs."""


class EnqueueError(FinejobsError, ValueError):
    """A job was refused at enqueue. Nothing was written."""


class PayloadError(EnqueueError):
    """The payload did not validate against the job kind's model.

    ``fields`` lists the dotted path of every field that failed.
    """

    def __init__(self, kind: str, fields: list[str], details: str) -> None:
        self.kind = kind
        self.fields = fields
        super().__init__(f"invalid payload for job kind {kind!r}: {details}")


class UnknownKindError(EnqueueError):
    """No job kind with this name is registered on the queue."""


class InvalidJobOptions(EnqueueError):
    """An option is invalid (naive datetime, a time out of range, expires_at before run_at, a priority or
    max_attempts out of range, ...), at enqueue or at declaration. See docs/guarantees.md for the limits."""


class JobNotFound(FinejobsError, LookupError):
    """No job has this id."""


class GroupNotFound(FinejobsError, LookupError):
    """No group has this name (or id)."""


class PipelineNotFound(FinejobsError, LookupError):
    """No pipeline run has this id (or no pipeline is declared with this name)."""


class Cancel(Exception):
    """Raise from a handler to end the job as ``cancelled``."""

    def __init__(self, reason: str = "cancelled by handler") -> None:
        self.reason = reason
        super().__init__(reason)


class Snooze(Exception):
    """Raise from a handler to run the job again after ``delay``; the attempt is not counted.

    The delay is clamped to ``finejobs.limits.MAX_DELAY`` (365 days).
    """

    def __init__(self, delay: timedelta | float) -> None:
        self.delay = delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
        if self.delay < timedelta(0):
            raise ValueError("Snooze delay must not be negative")
        super().__init__(f"snoozed for {self.delay}")
