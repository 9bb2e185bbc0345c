"""Pipeline rows (finejobs_pipelines, their steps and chunks): see finejobs.pipelines."""

from __future__ import annotations

from finejobs.store._base import StoreBase


class PipelineStore(StoreBase):
    """Pipelines, their steps and their work chunks."""
