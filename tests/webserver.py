"""A real console server for the tests: uvicorn in a thread, on a free port of 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import finejobs
import finejobs.web


@contextmanager
def serve(queue: finejobs.Queue, **options: Any) -> Iterator[str]:
    """Serve ``finejobs.web.app(queue, **options)``; yields its base URL (``http://127.0.0.1:PORT``)."""
    with finejobs.web.serving(finejobs.web.app(queue, **options)) as url:
        yield url
