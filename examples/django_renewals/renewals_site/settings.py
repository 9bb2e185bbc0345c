"""Settings of the renewals example: one PostgreSQL database for the app's tables and finejobs' (so that a
renewal job is written in the same transaction that marks its policy queued), the finejobs task backend, the
admin."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import finejobs

DATABASE_NAME = "finejobs_django_renewals"


def database_url() -> str:
    """FINEJOBS_DATABASE_URL, else the example's database on the server finejobs.devdb finds."""
    from finejobs import devdb

    configured = os.environ.get(devdb.DATABASE_URL_ENV)
    return configured or devdb.database_url(devdb.discover_server_url(), DATABASE_NAME)


def ensure_database() -> None:
    """Create the example's database on first use (not when FINEJOBS_DATABASE_URL names one)."""
    from finejobs import devdb

    if not os.environ.get(devdb.DATABASE_URL_ENV):
        devdb.create_database(devdb.discover_server_url(), name=DATABASE_NAME, exist_ok=True)


def django_database(url: str, **extra: Any) -> dict[str, Any]:
    """A DATABASES entry for a postgresql:// URL."""
    import psycopg

    from finejobs.store import libpq_url

    info = psycopg.conninfo.conninfo_to_dict(libpq_url(url))
    return {"ENGINE": "django.db.backends.postgresql", "NAME": info.get("dbname", ""),
            "USER": info.get("user", ""), "PASSWORD": info.get("password", ""), "HOST": info.get("host", ""),
            "PORT": str(info.get("port", "")), **extra}


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "finejobs.contrib.django",
    "renewals",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "renewals_site.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
ASGI_APPLICATION = "renewals_site.asgi.application"
DATABASES = {"default": django_database(database_url())}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

# The renewals run on Mondays at 06:00 in the scheme's time zone.
RENEWALS_TIMEZONE = os.environ.get("RENEWALS_TIMEZONE", "Africa/Dar_es_Salaam")
RENEWALS_DUE_WITHIN = timedelta(days=30)  # a policy is due when it expires within this

TASKS = {
    "default": {
        "BACKEND": "finejobs.contrib.django.FinejobsBackend",
        "QUEUES": ["default", "renewals"],
        "OPTIONS": {
            "DATABASE": "default",  # finejobs' tables beside the app's: enqueue in the app's transaction
            "RETRY": finejobs.Retry(max_attempts=1),
        },
    },
}
