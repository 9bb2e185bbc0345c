"""The operations API: every read and action an operator has, for every surface to call.

```python
admin = finejobs.Admin(queue)
page = admin.jobs(finejobs.JobFilter(state="failed", kind="dosage.alert"), limit=50)
admin.retry_matching(finejobs.JobFilter(state="failed", error="timeout"), dry_run=True)   # BulkResult
admin.pause(shard="district-3"); admin.paused(); admin.workers(); admin.stats()
```
The CLI, the web console, the REST API and the Django admin are thin views over these methods, so a fix or
a limit lands everywhere at once. Results are frozen dataclasses with ``to_json()``. Every query is bounded
and indexed (finejobs.store.operations); bulk actions run in short batches; actions go to the audit log.
"""

from finejobs.admin.core import (
    ACTIVITY_CAP,
    ACTIVITY_MINUTES,
    AUDIT_ACTOR_CHARS,
    BULK_BATCH,
    BULK_SCAN,
    COUNT_CAP,
    ERROR_COUNT_CAP,
    EXPIRING_WITHIN,
    PAGE_LIMIT,
    PAGE_SCAN,
    STATS_CAP,
    STATS_TTL,
    Admin,
)
from finejobs.admin.groups import GroupDetail, GroupOps
from finejobs.admin.pipelines import PIPELINE_PAGE_LIMIT, RUN_STATES, PipelineOps, PipelinePage
from finejobs.admin.results import (
    WORKER_GONE_AFTER,
    Activity,
    AuditEntry,
    BulkResult,
    Count,
    JobPage,
    KindInfo,
    LocalScheduleInfo,
    Overview,
    Pause,
    Shard,
    WorkerInfo,
)
from finejobs.admin.schedules import AuditedSchedules

__all__ = [
    "ACTIVITY_CAP", "ACTIVITY_MINUTES", "AUDIT_ACTOR_CHARS", "BULK_BATCH", "BULK_SCAN", "COUNT_CAP",
    "ERROR_COUNT_CAP", "EXPIRING_WITHIN", "PAGE_LIMIT", "PAGE_SCAN", "PIPELINE_PAGE_LIMIT", "RUN_STATES",
    "STATS_CAP", "STATS_TTL", "WORKER_GONE_AFTER",
    "Activity", "Admin", "AuditEntry", "AuditedSchedules", "BulkResult", "Count", "GroupDetail", "GroupOps",
    "JobPage", "KindInfo", "LocalScheduleInfo", "Overview", "Pause", "PipelineOps", "PipelinePage", "Shard",
    "WorkerInfo",
]
