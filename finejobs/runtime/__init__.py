"""The runtime: workers and the services they are made of (producer, executor, completer, heartbeat,
watchdog, maintenance, listener, scheduler, registry), a group of workers over several databases, and the
observers a worker tells of its events (claims, outcomes, schedule ticks: what finejobs.metrics counts)."""

from __future__ import annotations

from finejobs.runtime.observers import WorkerObserver
from finejobs.runtime.worker import Worker, WorkerCrashed
from finejobs.runtime.worker_group import WorkerGroup

__all__ = ["Worker", "WorkerCrashed", "WorkerGroup", "WorkerObserver"]
