"""The runtime: workers and the services they are made of (producer, executor, completer, heartbeat,
watchdog, maintenance, listener, scheduler, registry), and a group of workers over several databases."""

from __future__ import annotations

from finejobs.runtime.worker import Worker, WorkerCrashed
from finejobs.runtime.worker_group import WorkerGroup

__all__ = ["Worker", "WorkerCrashed", "WorkerGroup"]
