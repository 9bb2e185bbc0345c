"""Groups in the REST API and the console's pages, on a real uvicorn server and PostgreSQL: list (by state),
one group with its problem members (passwords masked), seal, cancel (operators only, CSRF on forms, audited,
a finished group refused), 404 for an unknown group, names with a ``/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import finejobs
from finejobs import Admin
from finejobs.web import Access, hash_password
from tests.webserver import serve

TOKEN = "groups-operator-token-0123456789-abcdef"
VIEWER_TOKEN = "groups-viewer-token-0123456789-abcdefgh"
ANA, VERA = ("ana", "operator-pass-1"), ("vera", "viewer-pass-1")
DB_PASSWORD = "s3cret-db-pw"


@pytest.fixture(scope="module")
def access() -> Access:
    return Access.build(users={ANA[0]: ("operator", hash_password(ANA[1])),
                               VERA[0]: ("viewer", hash_password(VERA[1]))},
                        tokens={"ci": ("operator", TOKEN), "grafana": ("viewer", VIEWER_TOKEN)})


@pytest.fixture
def app(queue: finejobs.Queue) -> finejobs.Queue:
    @queue.job("item", retry=finejobs.Retry(max_attempts=1))
    def item(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise RuntimeError(f"item {payload['n']}: postgresql://svc:{DB_PASSWORD}@db.example/x refused")

    @queue.job("report")
    def report(payload: dict[str, Any]) -> None:
        return None

    # "batch/7": sealed, 10 members: 6 done (3 failed), 4 waiting; "open one": open, nothing done.
    with queue.group("batch/7", on_complete="report", on_failure="report") as group:
        group.enqueue_many("item", [{"n": n, "fail": n in (0, 2, 4)} for n in range(10)])
    worker = queue.worker(listen=False, concurrency=6)
    assert isinstance(worker, finejobs.Worker)
    worker.work_once()
    queue.group("open one").enqueue("item", {"n": 99})
    return queue


@pytest.fixture
def base(app: finejobs.Queue, access: Access) -> Iterator[str]:
    with serve(app, access=access) as url:
        yield url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_rest_lists_shows_seals_and_cancels_groups(base: str, app: finejobs.Queue) -> None:
    with httpx.Client(base_url=f"{base}/api/v1", headers=bearer(TOKEN), timeout=10) as api, \
            httpx.Client(base_url=f"{base}/api/v1", headers=bearer(VIEWER_TOKEN), timeout=10) as viewer:
        paths = set(api.get("/openapi.json").json()["paths"])
        assert {"/api/v1/groups", "/api/v1/groups/{name}", "/api/v1/groups/{name}/cancel",
                "/api/v1/groups/{name}/seal"} <= paths
        listed = {g["name"]: g for g in viewer.get("/groups").json()}
        assert set(listed) == {"batch/7", "open one"}
        batch = listed["batch/7"]
        assert [batch[k] for k in ("state", "total", "done", "succeeded", "failed", "waiting")] == [
            "sealed", 10, 6, 3, 3, 4]
        assert batch["callbacks"] == ["complete", "failure"]
        assert [g["name"] for g in viewer.get("/groups", params={"state": "open"}).json()] == ["open one"]
        assert viewer.get("/groups", params={"state": "nope"}).status_code == 422
        assert viewer.get("/groups", params={"limit": 0}).status_code == 422

        detail = viewer.get("/groups/batch/7").json()
        assert detail["name"] == "batch/7" and len(detail["problems"]) == 3
        assert {p["state"] for p in detail["problems"]} == {"failed"}
        assert all(DB_PASSWORD not in (p["error"] or "") and "***" in p["error"] for p in detail["problems"])
        assert viewer.get("/groups/batch/7", params={"problems": 1}).json()["problems"][0]["id"] == max(
            p["id"] for p in detail["problems"])
        missing = viewer.get("/groups/no-such-group")
        assert missing.status_code == 404 and "no group named" in missing.json()["detail"]
        assert api.post("/groups/no-such-group/cancel").status_code == 404

        assert viewer.post("/groups/open one/cancel").status_code == 403, "a viewer cannot cancel"
        assert viewer.post("/groups/open one/seal").status_code == 403
        with httpx.Client(base_url=f"{base}/api/v1", auth=ANA, timeout=10) as basic:
            assert basic.post("/groups/open one/cancel").status_code == 403, "basic auth needs the CSRF header"
        assert Admin(app).groups.get("open one").progress.state == "open"

        cancelled = api.post("/groups/open one/cancel", json={"reason": "wrong tariff"})
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert (body["cancelled_now"], body["state"], body["cancelled"]) == (1, "cancelled", 1)
        again = api.post("/groups/open one/cancel")
        assert again.status_code == 409 and "already finished" in again.json()["detail"]
        assert api.post("/groups/batch/7/cancel", json={"reason": ""}).status_code == 422
    [entry] = [e for e in Admin(app).audit() if e.action == "cancel group"]
    assert (entry.actor, entry.target["group"], entry.count, entry.detail) == ("web:ci", "open one", 1, "wrong tariff")


def test_rest_seals_an_open_group(base: str, app: finejobs.Queue) -> None:
    with httpx.Client(base_url=f"{base}/api/v1", headers=bearer(TOKEN), timeout=10) as api:
        sealed = api.post("/groups/open one/seal")
        assert sealed.status_code == 200 and sealed.json()["state"] == "sealed"
        assert sealed.json()["sealed_at"] is not None


def token_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text) or re.search(
        r'"x-csrf-token": "([0-9a-f]+)"', page.text)
    assert match, "the page carries its CSRF token"
    return match.group(1)


def test_pages_show_progress_and_only_operators_cancel(base: str, app: finejobs.Queue) -> None:
    with httpx.Client(base_url=base, auth=VERA, timeout=10) as viewer:
        listing = viewer.get("/groups")
        assert listing.status_code == 200
        assert 'role="progressbar"' in listing.text and 'href="/groups/~YmF0Y2gvNw"' in listing.text
        assert ">Groups</a>" in listing.text, "in the navigation"
        assert 'hx-get="/partials/groups"' in listing.text
        opened = viewer.get("/partials/groups?state=open").text
        assert 'data-group="open one"' in opened
        assert "The newest 1 group that is open" in opened, opened
        assert 'data-group="batch/7"' not in viewer.get("/groups?state=open").text
        page = viewer.get("/groups/~YmF0Y2gvNw")
        assert page.status_code == 200 and 'id="group-problems"' in page.text
        assert 'hx-get="/partials/groups/~YmF0Y2gvNw"' in page.text, "refreshed while unfinished"
        live = viewer.get("/partials/groups/~YmF0Y2gvNw").text
        assert 'id="group-live"' in live and "<html" not in live, "the live part alone"
        assert DB_PASSWORD not in page.text and re.search(r'href="/jobs/\d+"', page.text)
        member = re.search(r'href="/jobs/(\d+)"', page.text)
        assert member is not None
        job_page = viewer.get(f"/jobs/{member.group(1)}").text
        assert 'id="job-group" href="/groups/~YmF0Y2gvNw"' in job_page, "a member's page links to its group"
        assert "group-cancel" not in page.text and 'method="post"' not in page.text, "a viewer sees no action"
        assert "group-cancel" not in viewer.get("/groups/open%20one").text
        assert viewer.get("/groups/open%20one/cancel").status_code == 403, "nor the confirmation step"
        token = token_of(viewer.get("/groups/open%20one"))
        assert viewer.post("/groups/open%20one/cancel", data={"csrf": token}).status_code == 403
        assert viewer.post("/groups/open%20one/seal", data={"csrf": token}).status_code == 403
        assert viewer.get("/groups/nope").status_code == 404
        assert viewer.get("/groups/~!!").status_code == 404
    assert Admin(app).groups.get("open one").progress.state == "open"
    with httpx.Client(base_url=base, auth=ANA, timeout=10) as operator:
        page = operator.get("/groups/open%20one")
        assert 'id="group-cancel"' in page.text and 'id="group-seal"' in page.text
        assert operator.post("/groups/open%20one/cancel", data={}).status_code == 403, "no CSRF token"
        review = operator.get("/groups/open%20one/cancel")
        assert review.status_code == 200 and 'id="confirm-cancel"' in review.text
        done = operator.post("/groups/open%20one/cancel", data={"csrf": token_of(review)})
        assert done.status_code == 303
        shown = operator.get(done.headers["location"])
        assert "1 waiting member(s) cancelled" in shown.text and 'data-state="cancelled"' in shown.text
        assert "group-cancel" not in shown.text, "a finished group has no cancel button"
        refused = operator.post("/groups/open%20one/cancel", data={"csrf": token_of(review)})
        assert refused.status_code == 422 and "already finished" in refused.text
    assert Admin(app).groups.get("open one").progress.state == "cancelled"
    assert [e.actor for e in Admin(app).audit() if e.action == "cancel group"] == ["web:ana"]
