"""Group operations for operators (``Admin.groups``): list, show (with the members that did not succeed),
seal and cancel, the last two written to the audit log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finejobs.errors import GroupNotFound, InvalidJobOptions
from finejobs.groups import GROUP_STATES, Group, GroupProgress, find_group, list_groups
from finejobs.jobs import Job
from finejobs.limits import MAX_MESSAGE_CHARS, check_int, check_text
from finejobs.queue import Queue

GROUP_PAGE_LIMIT = 200
PROBLEM_STATES = ("failed", "expired", "cancelled")

Acted = Callable[[str, dict[str, Any], "int | None", "str | None"], None]


@dataclass(frozen=True)
class GroupDetail:
    """One group's progress and its newest members that did not succeed."""

    progress: GroupProgress
    problems: tuple[Job, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.progress.to_json(), "problems": [
            {"id": j.id, "kind": j.kind, "shard": j.shard, "state": j.state.value,
             "error": j.errors[-1].message if j.errors else None} for j in self.problems]}


class GroupOps:
    """What an operator can do with groups (every database of the queue's shard map)."""

    def __init__(self, queue: Queue, acted: Acted) -> None:
        self.queue = queue
        self._acted = acted

    def list(self, *, state: str | None = None, limit: int = 50) -> list[GroupProgress]:
        """The newest groups first (``state``: open, sealed, cancelling, succeeded, failed, cancelled)."""
        check_int("limit", limit, 1, GROUP_PAGE_LIMIT)
        if state is not None and state not in GROUP_STATES:
            raise InvalidJobOptions(f"unknown group state {state!r} (one of: {', '.join(GROUP_STATES)})")
        return list_groups(self.queue, limit=limit, state=state)

    def get(self, name: str, *, database: str | None = None, problems: int = 20) -> GroupDetail:
        """A group's progress and its ``problems`` newest failed, expired or cancelled members."""
        check_int("problems", problems, 0, GROUP_PAGE_LIMIT)
        group = find_group(self.queue, name, database=database)
        members = self.queue.store_of(group.database).group_members(
            group_id=group.id, states=PROBLEM_STATES, limit=problems, now=self.queue.clock()) if problems else []
        return GroupDetail(group.progress(), tuple(members))

    def of_job(self, job: Job) -> GroupProgress | None:
        """The progress of ``job``'s group (it lives in the database of the job's shard); None if it has none
        or the group is gone."""
        if job.group_id is None:
            return None
        database = self.queue.shard_map.database_for(job.shard)
        try:
            row = self.queue.store_of(database).group_get(group_id=job.group_id)
        except GroupNotFound:
            return None
        return Group(self.queue, row, database).progress()

    def seal(self, name: str, *, database: str | None = None) -> GroupProgress:
        group = find_group(self.queue, name, database=database)
        progress = group.seal()
        self._acted("seal group", {"group": group.name, "database": group.database}, None, None)
        return progress

    def cancel(self, name: str, *, reason: str = "cancelled by operator", database: str | None = None) -> int:
        """Seal the group and cancel its waiting members; returns how many were cancelled."""
        check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        group = find_group(self.queue, name, database=database)
        cancelled = group.cancel(reason)
        self._acted("cancel group", {"group": group.name, "database": group.database}, cancelled, reason)
        return cancelled
