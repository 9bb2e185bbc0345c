"""The one place that knows whether Django's tasks framework is ``django.tasks`` (Django 6.0 and newer) or the
``django_tasks`` backport (Django 5.2): every other module imports the framework's names from here.

Django 6 wins when both are installed (a project on Django 6 imports ``django.tasks``); set
FINEJOBS_DJANGO_TASKS=django_tasks to use the backport on Django 6 as well. The differences this covers: the
module, the name of the invalid-task error (InvalidTask / InvalidTaskError) and where ``normalize_json`` lives.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from finejobs.errors import ConfigurationError

CHOICE_ENV = "FINEJOBS_DJANGO_TASKS"


def _framework() -> tuple[str, Any]:
    wanted = os.environ.get(CHOICE_ENV, "")
    order = [wanted] if wanted else ["django.tasks", "django_tasks"]
    for name in order:
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    raise ImproperlyConfigured(
        f"finejobs.contrib.django needs Django's tasks framework: Django 6 (django.tasks), or on Django 5.2 the "
        f"backport (pip install django-tasks){f'; {CHOICE_ENV}={wanted!r} names none of them' if wanted else ''}")


FRAMEWORK, tasks = _framework()
_base: Any = importlib.import_module(f"{FRAMEWORK}.base")
_backends: Any = importlib.import_module(f"{FRAMEWORK}.backends.base")
_exceptions: Any = importlib.import_module(f"{FRAMEWORK}.exceptions")
_signals: Any = importlib.import_module(f"{FRAMEWORK}.signals")

BaseTaskBackend: Any = _backends.BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
DEFAULT_TASK_BACKEND_ALIAS: str = _base.DEFAULT_TASK_BACKEND_ALIAS
DEFAULT_TASK_PRIORITY: int = _base.DEFAULT_TASK_PRIORITY
DEFAULT_TASK_QUEUE_NAME: str = _base.DEFAULT_TASK_QUEUE_NAME
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_backends: Any = tasks.task_backends
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
normalize_json: Any = (importlib.import_module("django.utils.json").normalize_json if FRAMEWORK == "django.tasks"
                       else importlib.import_module("django_tasks.utils").normalize_json)


class BackendConfigurationError(ConfigurationError, ImproperlyConfigured):  # type: ignore[misc]
    """The finejobs backend's settings (TASKS[alias]) are wrong: a finejobs error and Django's
    ImproperlyConfigured at once."""
