"""finejobs for Django (``pip install 'finejobs[django]'``): a ``django.tasks`` backend, transactional enqueue on
Django's own connection, migrations, admin pages and management commands. See docs/django.md.

```python
INSTALLED_APPS = [..., "finejobs.contrib.django"]
TASKS = {"default": {"BACKEND": "finejobs.contrib.django.FinejobsBackend", "QUEUES": ["default"]}}
```
"""

from finejobs.contrib.django.backend import FinejobsBackend, FinejobsTask, schedule, task
from finejobs.contrib.django.results import JobCancelled, JobExpired, Unrunnable, WorkerLost, WorkerShutdown

__all__ = ["FinejobsBackend", "FinejobsTask", "JobCancelled", "JobExpired", "Unrunnable", "WorkerLost",
           "WorkerShutdown", "schedule", "task"]
