#!/usr/bin/env python
"""The example's manage.py: ``python examples/django_renewals/manage.py migrate | runserver | finejobs_worker``.

Its database: FINEJOBS_DATABASE_URL if set, else the database ``finejobs_django_renewals`` on the local
PostgreSQL server (127.0.0.1:5432) or an embedded one, made on first use (as the dosage-reminders demo does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    sys.path.insert(1, str(here.parents[1]))  # the finejobs checkout, for an uninstalled finejobs
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renewals_site.settings")
    from renewals_site.settings import ensure_database

    ensure_database()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
