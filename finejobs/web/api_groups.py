"""REST: groups (list by state, one with its members that did not succeed, seal, cancel): thin views over
``finejobs.admin.Admin.groups``. Group names may hold ``/``: the routes take the rest of the path as the name.
An unknown group is 404; cancelling a group that has already finished, 409."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from finejobs.admin.groups import GROUP_PAGE_LIMIT
from finejobs.errors import FinejobsError
from finejobs.filters import MAX_FILTER_TEXT
from finejobs.groups import GroupProgress
from finejobs.limits import check_text
from finejobs.web import schemas_groups as schemas
from finejobs.web.api_common import ACT, ITEM, READ, Route
from finejobs.web.deps import Operator, Viewer, admin_for, scrub

router = APIRouter(tags=["groups"], route_class=Route)

NAME_CHARS = 200


NAME = "{name:path_name}"  # a name with "/" in it too (api_common)
Name = Annotated[str, Path(min_length=1, max_length=NAME_CHARS, description="the group's name")]
Database = Annotated[str | None, Query(max_length=MAX_FILTER_TEXT,
                                       description="with a shard map: the database holding the group")]


def _name(name: str) -> str:
    return check_text("name", name, max_chars=NAME_CHARS)


def group_out(progress: GroupProgress) -> schemas.Group:
    return schemas.Group.model_validate(progress.to_json())


@router.get("/groups", responses=READ, summary="Groups, newest first, with their progress, rate and ETA")
def list_groups(request: Request, who: Viewer, state: schemas.GroupState | None = None,
                limit: Annotated[int, Query(ge=1, le=GROUP_PAGE_LIMIT)] = 50) -> list[schemas.Group]:
    return [group_out(g) for g in admin_for(request, who).groups.list(state=state, limit=limit)]


@router.post(f"/groups/{NAME}/seal", responses=ACT, summary="Seal: no job joins any more (it finishes once done)")
def seal(request: Request, who: Operator, name: Name, database: Database = None) -> schemas.Group:
    return group_out(admin_for(request, who).groups.seal(_name(name), database=database))


@router.post(f"/groups/{NAME}/cancel", responses=ACT,
             summary="Cancel: seal it and cancel its waiting members (running ones finish)")
def cancel(request: Request, who: Operator, name: Name, body: schemas.GroupCancel | None = None,
           database: Database = None) -> schemas.GroupCancelled:
    ops = admin_for(request, who).groups
    before = ops.get(_name(name), database=database, problems=0).progress
    if before.finished:
        raise FinejobsError(f"group {before.name!r} has already finished ({before.state}): nothing to cancel")
    cancelled = ops.cancel(before.name, reason=body.reason if body is not None else "cancelled by operator",
                           database=before.database)
    after = ops.get(before.name, database=before.database, problems=0).progress
    return schemas.GroupCancelled(**dict(group_out(after)), cancelled_now=cancelled)


@router.get(f"/groups/{NAME}", responses=ITEM, summary="A group: progress, callbacks, members that did not succeed")
def get_group(request: Request, who: Viewer, name: Name, database: Database = None,
              problems: Annotated[int, Query(ge=0, le=GROUP_PAGE_LIMIT,
                                             description="how many problem members")] = 20) -> schemas.GroupDetail:
    data = admin_for(request, who).groups.get(_name(name), database=database, problems=problems).to_json()
    for member in data["problems"]:
        if member["error"] is not None:
            member["error"] = scrub(request, member["error"])
    return schemas.GroupDetail.model_validate(data)
