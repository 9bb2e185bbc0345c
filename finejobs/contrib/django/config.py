"""The backend's settings (``TASKS[alias]["OPTIONS"]``), where the finejobs tables are, and the one
finejobs.Queue per place that every backend instance of the process shares (Django makes a backend instance
per thread: the queue, its connection pools and its job kinds must not be per thread).

Where the tables are, one of:

- ``"DATABASE": "default"`` (the default): the PostgreSQL database of that Django alias. Jobs are written on
  Django's own connection, inside the caller's ``transaction.atomic()``. The URL is read from the alias's
  settings at each use, so a test database (``test_<NAME>``) is followed.
- ``"URL": "postgresql://..."`` or ``"SHARD_MAP": "shards.toml"``: a database Django does not know (jobs are
  written after the caller's transaction commits, ``transaction.on_commit`` on ``APP_DATABASE``).
- ``"QUEUE": "myproject.jobs:queue"``: your own finejobs.Queue (its kinds, shard map and URL); add
  ``"DATABASE": alias`` when that alias's database is the queue's, to enqueue in Django's transaction.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from django.db import DEFAULT_DB_ALIAS, connections

from finejobs.contrib.django.compat import BackendConfigurationError
from finejobs.errors import FinejobsError
from finejobs.queue import Queue
from finejobs.retry import Retry
from finejobs.sharding import validate_shard_name

KNOWN_OPTIONS = ("DATABASE", "URL", "SHARD_MAP", "QUEUE", "APP_DATABASE", "QUEUE_SHARDS", "POOL_SIZE", "RETRY",
                 "TASK_MODULES")
_LIBPQ_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs",
                  "application_name")


@dataclass(frozen=True)
class Options:
    """A backend's OPTIONS, checked."""

    database: str | None  # the Django alias whose database holds the finejobs tables (jobs in its transaction)
    url: str | None
    shard_map: str | None
    queue: str | None  # "module:attr" of a finejobs.Queue of the project's own
    app_database: str  # the alias whose transaction on_commit follows when the tables live elsewhere
    queue_shards: Mapping[str, str]  # Django queue_name -> finejobs shard (default: the same name)
    pool_size: int
    retry: Retry | None  # the default retry policy of tasks that name none (default: one attempt)
    task_modules: tuple[str, ...]  # imported by workers besides every installed app's "tasks" module

    @classmethod
    def parse(cls, alias: str, raw: Any) -> Options:
        where = f"TASKS[{alias!r}]['OPTIONS']"
        if not isinstance(raw, Mapping):
            raise BackendConfigurationError(f"{where} must be a dict, got {type(raw).__name__}")
        unknown = sorted(set(map(str, raw)) - set(KNOWN_OPTIONS))
        if unknown:
            raise BackendConfigurationError(f"{where}: unknown option(s) {', '.join(unknown)} "
                                            f"(known: {', '.join(KNOWN_OPTIONS)})")
        places = [key for key in ("URL", "SHARD_MAP", "QUEUE") if raw.get(key) is not None]
        if len(places) > 1:
            raise BackendConfigurationError(f"{where}: give one of URL, SHARD_MAP and QUEUE, "
                                            f"not {' and '.join(places)}")
        database = raw.get("DATABASE", None if places else DEFAULT_DB_ALIAS)
        if places and places[0] != "QUEUE" and raw.get("DATABASE") is not None:
            raise BackendConfigurationError(f"{where}: DATABASE names a Django database for the finejobs tables, "
                                            f"{places[0]} another place: give one")
        for key in ("DATABASE", "URL", "SHARD_MAP", "QUEUE", "APP_DATABASE"):
            if raw.get(key) is not None and not (isinstance(raw[key], str) and raw[key].strip()):
                raise BackendConfigurationError(f"{where}['{key}'] must be a non-empty string")
        aliases = set(connections.settings)
        app_database = raw.get("APP_DATABASE", DEFAULT_DB_ALIAS)
        for key, name in (("DATABASE", database), ("APP_DATABASE", app_database)):
            if name is not None and name not in aliases:
                raise BackendConfigurationError(f"{where}['{key}']: {name!r} is not in DATABASES "
                                                f"({', '.join(sorted(aliases))})")
        shards = raw.get("QUEUE_SHARDS", {})
        if not isinstance(shards, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in shards.items()):
            raise BackendConfigurationError(f"{where}['QUEUE_SHARDS'] must map queue names to shard names")
        for queue_name, shard in shards.items():
            try:
                validate_shard_name(shard)
            except FinejobsError as exc:
                raise BackendConfigurationError(f"{where}['QUEUE_SHARDS'][{queue_name!r}]: {exc}") from None
        pool_size = raw.get("POOL_SIZE", 5)
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or not 1 <= pool_size <= 100:
            raise BackendConfigurationError(f"{where}['POOL_SIZE'] must be a whole number from 1 to 100")
        retry = raw.get("RETRY")
        if retry is not None and not isinstance(retry, Retry):
            raise BackendConfigurationError(f"{where}['RETRY'] must be a finejobs.Retry, got {type(retry).__name__}")
        modules = raw.get("TASK_MODULES", ())
        if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
            raise BackendConfigurationError(f"{where}['TASK_MODULES'] must be a list of module names")
        return cls(database=database, url=raw.get("URL"), shard_map=raw.get("SHARD_MAP"), queue=raw.get("QUEUE"),
                   app_database=app_database, queue_shards=dict(shards), pool_size=pool_size, retry=retry,
                   task_modules=tuple(modules))

    @property
    def place(self) -> tuple[str, str]:
        """What identifies the queue of these options in this process."""
        if self.queue is not None:
            return ("queue", self.queue)
        if self.url is not None:
            return ("url", self.url)
        if self.shard_map is not None:
            return ("shard_map", self.shard_map)
        assert self.database is not None
        return ("database", self.database)


def alias_url(alias: str) -> str:
    """The postgresql:// URL of a Django database alias, as its settings are now (a test run renames NAME)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        raise BackendConfigurationError(
            f"DATABASES[{alias!r}] is {connection.vendor}: the finejobs tables need PostgreSQL. Keep them in a "
            "PostgreSQL database (TASKS OPTIONS 'DATABASE': another alias, or 'URL')")
    settings = connection.settings_dict
    user, password = settings.get("USER") or "", settings.get("PASSWORD") or ""
    host, port, name = settings.get("HOST") or "", settings.get("PORT") or "", settings.get("NAME") or ""
    if not name:
        raise BackendConfigurationError(f"DATABASES[{alias!r}] has no NAME")
    query = {key: str(value) for key, value in (settings.get("OPTIONS") or {}).items() if key in _LIBPQ_OPTIONS}
    if host.startswith("/"):  # a Unix socket directory
        query["host"], host = host, ""
    auth = f"{quote(user, safe='')}{':' + quote(password, safe='') if password else ''}@" if user else ""
    netloc = f"{auth}{host}{':' + str(port) if port else ''}"
    return f"postgresql://{netloc}/{quote(name, safe='')}" + (f"?{urlencode(query)}" if query else "")


_queues: dict[tuple[str, str], tuple[Queue, str | None]] = {}
_lock = threading.Lock()


def queue_for(options: Options) -> Queue:
    """The process's Queue for these options (made at first use; with DATABASE, pointed again at the alias's
    database if its settings changed since, as when a test run switches to the test database)."""
    url = alias_url(options.database) if options.queue is None and options.database is not None else None
    with _lock:
        known = _queues.get(options.place)
        if known is None:
            queue = _load_queue(options.queue) if options.queue is not None else \
                Queue(url or options.url, shard_map=options.shard_map, pool_size=options.pool_size)
            _queues[options.place] = (queue, url)
            return queue
        queue, was = known
        if url is not None and url != was:
            queue.configure(url=url)
            _queues[options.place] = (queue, url)
        return queue


def close_queues() -> None:
    """Release the connection pools of every queue made here (they open again at next use)."""
    with _lock:
        queues = [queue for queue, _ in _queues.values()]
    for queue in queues:
        queue.close()


def _load_queue(path: str) -> Queue:
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        found: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BackendConfigurationError(f"TASKS OPTIONS 'QUEUE' {path!r} cannot be imported: {exc}") from exc
    if not isinstance(found, Queue):
        raise BackendConfigurationError(f"TASKS OPTIONS 'QUEUE' {path!r} is a {type(found).__name__}, "
                                        "not a finejobs.Queue")
    return found
