"""``manage.py finejobs_worker [--shard NAME ...] [--concurrency N] ...``: a finejobs worker for this project's
tasks, with every option of ``finejobs worker`` (``--help`` lists them); SIGTERM or SIGINT stops it cleanly
(running tasks get --shutdown-grace seconds)."""

from __future__ import annotations

from finejobs.contrib.django.management.commands.finejobs import Command as FinejobsCommand


class Command(FinejobsCommand):
    help = "A finejobs worker for this project's tasks (the options of `finejobs worker`; try --help)."
    command = ("worker",)
