"""Bulk import: COPY into the job table (see finejobs.importing)."""

from __future__ import annotations

from finejobs.store._base import StoreBase


class BulkStore(StoreBase):
    """COPY of many new jobs in one transaction."""
