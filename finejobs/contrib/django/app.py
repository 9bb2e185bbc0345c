"""A Django project's finejobs queue for the finejobs CLI's ``--app``: ``finejobs worker --app
finejobs.contrib.django.app`` (DJANGO_SETTINGS_MODULE set) serves the tasks of the project's finejobs backend
(``queue``: the admin's backend, see admin_base; ``queue_<alias>``: the backend TASKS[alias]), after Django is
set up and the tasks are imported (finejobs.contrib.django.discovery). ``manage.py finejobs_worker`` does this."""

from __future__ import annotations

from typing import Any

from finejobs.queue import Queue


def backend_of(alias: str | None = None) -> Any:
    """The finejobs backend TASKS[alias] (default: the admin's), Django set up first if it is not yet."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from finejobs.contrib.django.admin_base import admin_backend
    from finejobs.contrib.django.backend import FinejobsBackend
    from finejobs.contrib.django.compat import BackendConfigurationError, task_backends

    if alias is None:
        return admin_backend()
    backend = task_backends[alias]
    if not isinstance(backend, FinejobsBackend):
        raise BackendConfigurationError(f"TASKS[{alias!r}] is not a finejobs backend")
    return backend


def queue_of(alias: str | None = None) -> Queue:
    """The backend's queue with every task it serves declared."""
    from finejobs.contrib.django.discovery import discover

    backend = backend_of(alias)
    discover(backend)
    queue: Queue = backend.queue
    return queue


def __getattr__(name: str) -> Queue:
    if name == "queue":
        return queue_of()
    if name.startswith("queue_"):
        return queue_of(name[len("queue_"):])
    raise AttributeError(name)
