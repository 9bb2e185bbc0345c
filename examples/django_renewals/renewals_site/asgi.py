"""The project's ASGI application, with the finejobs console mounted at /jobs/ (``finejobs[web]``): run it
with ``uvicorn renewals_site.asgi:application`` from examples/django_renewals."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renewals_site.settings")
django_application = get_asgi_application()

from finejobs.contrib.django.asgi import with_console  # noqa: E402  (after Django is set up)

application = with_console(django_application, prefix="/jobs")
