"""What ``manage.py finejobs ...`` and ``manage.py finejobs_worker ...`` share: the finejobs CLI, run in this
process on the project's finejobs backend (its database from Django's settings, its tasks imported, ``--app``
pointing at it), with the same options, output and exit statuses as ``finejobs``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from finejobs.contrib.django.app import backend_of

APP_ENV = "FINEJOBS_APP"
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


def strip_django_options(argv: Sequence[str]) -> list[str]:
    """The arguments without Django's own --settings and --pythonpath (manage.py has applied them)."""
    found: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in _DJANGO_OPTIONS)):
            found.append(arg)
    return found


def run_cli(args: Sequence[str], *, command: Sequence[str] = ()) -> int:
    """Run ``finejobs [--database-url ...] COMMAND... ARGS...``; ``--backend ALIAS`` first picks a backend."""
    from finejobs.cli import main
    from finejobs.contrib.django.config import alias_url

    rest = list(args)
    alias = None
    if rest[:1] == ["--backend"] and len(rest) > 1:
        alias, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--backend="):
        alias, rest = rest[0].partition("=")[2], rest[1:]
    backend = backend_of(alias)  # its tasks are imported when the command loads --app (app.queue_of)
    options = backend.settings
    place: list[str] = []
    if options.queue is None:
        if options.database is not None:
            place = ["--database-url", alias_url(options.database)]
        elif options.url is not None:
            place = ["--database-url", options.url]
        elif options.shard_map is not None:
            place = ["--shard-map", options.shard_map]
    os.environ.setdefault(APP_ENV, f"finejobs.contrib.django.app:{'queue' if alias is None else 'queue_' + alias}")
    return main([*place, *command, *rest])
