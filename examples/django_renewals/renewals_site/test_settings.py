"""The example's settings for its tests (tests/django): test databases of their own, with unique names, on
the server finejobs.devdb finds (never inside a database FINEJOBS_DATABASE_URL names), and two more task
backends whose tables live in another database: "elsewhere" (another PostgreSQL alias: transaction.on_commit)
and "sqlite_app" (the app's data in SQLite, the jobs in PostgreSQL)."""

from __future__ import annotations

import os
import uuid

from renewals_site.settings import *  # noqa: F403
from renewals_site.settings import TASKS, django_database

from finejobs import devdb

SERVER = devdb.discover_server_url()
_RUN = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
_UNUSED = "finejobs_django_never_used"  # tests work in their TEST NAMEs only

DATABASES = {
    "default": django_database(devdb.database_url(SERVER, _UNUSED), TEST={"NAME": f"finejobs_dj_{_RUN}"}),
    "jobs": django_database(devdb.database_url(SERVER, _UNUSED + "_jobs"), TEST={"NAME": f"finejobs_dj_jobs_{_RUN}"}),
    "legacy": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
TASKS = {
    **TASKS,
    "elsewhere": {"BACKEND": "finejobs.contrib.django.FinejobsBackend", "QUEUES": ["default"],
                  "OPTIONS": {"DATABASE": "jobs"}},
    "sqlite_app": {"BACKEND": "finejobs.contrib.django.FinejobsBackend", "QUEUES": ["default"],
                   "OPTIONS": {"DATABASE": "jobs", "APP_DATABASE": "legacy"}},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
LOGGING = {"version": 1, "disable_existing_loggers": False}
