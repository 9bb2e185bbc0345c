"""Which tasks a worker serves: every installed app's ``tasks`` module, the modules of OPTIONS['TASK_MODULES'],
and the tasks named by the jobs waiting when it starts (imported by their module path). A job of a task the
worker never imported is not claimed: it waits for a worker that knows it (the admin lists it by kind)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from django.utils.module_loading import autodiscover_modules, import_string

from finejobs.admin import Admin
from finejobs.errors import FinejobsError

log = logging.getLogger("finejobs.django")

WAITING = ("scheduled", "available", "running")


def discover(backend: Any) -> list[str]:
    """Import the backend's tasks (declaring their job kinds); returns the kinds of waiting jobs it could not."""
    autodiscover_modules("tasks")
    for module in backend.settings.task_modules:
        importlib.import_module(module)
    try:
        by_kind = Admin(backend.queue, actor="django:discover").stats(fresh=True).by_kind
    except FinejobsError as exc:  # no database yet: the worker says so itself
        log.debug("cannot read the waiting jobs' kinds: %s", exc)
        return []
    missing = []
    for kind, counts in sorted(by_kind.items()):
        if kind in backend.queue.kinds or not any(counts.get(state) for state in WAITING):
            continue
        try:
            found = import_string(kind)
        except ImportError:
            found = None
        if found is None or kind not in backend.queue.kinds:
            missing.append(kind)
    if missing:
        log.warning("jobs of %d kind(s) wait that this process has no task for (not claimed): %s", len(missing),
                    ", ".join(missing[:20]))
    return missing
