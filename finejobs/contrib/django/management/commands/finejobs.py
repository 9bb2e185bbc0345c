"""``manage.py finejobs ARGS...``: the finejobs command line on this project's finejobs backend (``--backend
ALIAS`` first for another one): ``manage.py finejobs jobs list --state failed``, ``manage.py finejobs stats``,
``manage.py finejobs web`` ... (``manage.py finejobs --help`` lists the commands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from finejobs.contrib.django.commands import run_cli, strip_django_options


class Command(BaseCommand):  # type: ignore[misc]
    help = "The finejobs command line on this project's finejobs backend (try: manage.py finejobs --help)."
    command: tuple[str, ...] = ()

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="finejobs' arguments")

    def run_from_argv(self, argv: list[str]) -> None:
        code = run_cli(strip_django_options(argv[2:]), command=self.command)
        if code:
            sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_cli([*args, *options.get("cli_args", [])], command=self.command)
        if code:
            raise CommandError(f"finejobs exited with status {code}", returncode=code)
