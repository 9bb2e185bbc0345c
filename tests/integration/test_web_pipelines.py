"""Pipeline runs in the REST API and the console's pages, on a real uvicorn server and PostgreSQL: the runs
(by state, keyset pages), one run with each step's chunks and items, cancel (operators only, CSRF on forms,
audited, an ended run refused with 409), 404 for an unknown run."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

import finejobs
from finejobs.admin.pipelines import PipelineOps
from finejobs.runtime.worker import Worker
from finejobs.web import Access, hash_password
from tests.acceptance.app_pipelines import declare
from tests.webserver import serve

TOKEN = "pipes-operator-token-0123456789-abcdefg"
VIEWER_TOKEN = "pipes-viewer-token-0123456789-abcdefghi"
ANA, VERA = ("ana", "operator-pass-1"), ("vera", "viewer-pass-1")


@pytest.fixture(scope="module")
def access() -> Access:
    return Access.build(users={ANA[0]: ("operator", hash_password(ANA[1])),
                               VERA[0]: ("viewer", hash_password(VERA[1]))},
                        tokens={"ci": ("operator", TOKEN), "grafana": ("viewer", VIEWER_TOKEN)})


@pytest.fixture
def runs(queue: finejobs.Queue) -> tuple[int, int]:
    """Run 1 of "export" over 23 ids: succeeded, 5 items skipped; run 2: running, nothing done yet."""
    export = declare(queue)
    done = export.start({"n": 23})
    worker = queue.worker(listen=False, concurrency=4, run_scheduler=False, register=False)
    assert isinstance(worker, Worker)
    while worker.work_once():
        pass
    return done.id, export.start({"n": 4}).id


@pytest.fixture
def base(queue: finejobs.Queue, runs: tuple[int, int], access: Access) -> Iterator[str]:
    with serve(queue, access=access) as url:
        yield url


def test_rest_lists_shows_and_cancels_runs(base: str, queue: finejobs.Queue, runs: tuple[int, int]) -> None:
    done, running = runs
    with httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as api, \
            httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
                         timeout=10) as viewer:
        paths = set(api.get("/openapi.json").json()["paths"])
        assert {"/api/v1/pipelines", "/api/v1/pipelines/{run_id}", "/api/v1/pipelines/{run_id}/cancel"} <= paths
        page = viewer.get("/pipelines").json()
        assert [r["id"] for r in page["pipelines"]] == [running, done] and page["next_before"] is None
        first = viewer.get("/pipelines", params={"limit": 1}).json()
        assert [r["id"] for r in first["pipelines"]] == [running] and first["next_before"] == running
        assert [r["id"] for r in viewer.get("/pipelines", params={"before": running}).json()["pipelines"]] == [done]
        assert [r["id"] for r in viewer.get("/pipelines", params={"state": "succeeded"}).json()["pipelines"]] == [done]
        assert viewer.get("/pipelines", params={"state": "nope"}).status_code == 422
        run = viewer.get(f"/pipelines/{done}").json()
        assert (run["state"], run["result"], run["params"]) == ("succeeded", {"written": 18}, {"n": 23})
        expand = run["steps"][1]
        assert (expand["name"], expand["chunks_total"], expand["chunks_done"], expand["chunks_skipped"],
                expand["items_total"], expand["items_done"], expand["items_skipped"]) == (
            "expand", 5, 4, 1, 23, 18, 5)
        assert viewer.get("/pipelines/999").status_code == 404
        assert viewer.get("/pipelines/0").status_code == 422
        assert viewer.post(f"/pipelines/{running}/cancel").status_code == 403, "a viewer cannot cancel"
        with httpx.Client(base_url=f"{base}/api/v1", auth=ANA, timeout=10) as basic:
            assert basic.post(f"/pipelines/{running}/cancel").status_code == 403, "basic auth needs the CSRF header"
        assert PipelineOps(queue).get(running).state == "running"
        cancelled = api.post(f"/pipelines/{running}/cancel", json={"reason": "wrong ids"})
        assert cancelled.status_code == 200 and (cancelled.json()["state"], cancelled.json()["error"]) == (
            "cancelled", "wrong ids")
        again = api.post(f"/pipelines/{running}/cancel")
        assert again.status_code == 409 and "it is cancelled" in again.json()["detail"]
        assert api.post("/pipelines/999/cancel").status_code == 404
    [entry] = [e for e in finejobs.Admin(queue).audit() if e.action == "pipeline cancel"]
    assert (entry.actor, entry.target["pipeline"], entry.detail) == ("web:ci", running, "wrong ids")


def token_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text) or re.search(
        r'"x-csrf-token": "([0-9a-f]+)"', page.text)
    assert match, "the page carries its CSRF token"
    return match.group(1)


def test_pages_show_each_steps_bar_and_only_operators_cancel(base: str, queue: finejobs.Queue,
                                                             runs: tuple[int, int]) -> None:
    done, running = runs
    with httpx.Client(base_url=base, auth=VERA, timeout=10) as viewer:
        listing = viewer.get("/pipelines")
        assert listing.status_code == 200 and ">Pipelines</a>" in listing.text
        assert f'data-run="{done}" data-state="succeeded"' in listing.text and 'role="progressbar"' in listing.text
        assert f'data-run="{done}"' not in viewer.get("/partials/pipelines?state=running").text
        assert viewer.get("/pipelines?before=x").status_code == 422
        page = viewer.get(f"/pipelines/{done}")
        assert page.status_code == 200 and page.text.count('role="progressbar"') == 4, "a bar per step"
        assert 'data-step="expand" data-state="done"' in page.text and "&#34;written&#34;: 18" in page.text
        assert "pipeline-cancel" not in viewer.get(f"/pipelines/{running}").text, "a viewer sees no action"
        assert f'hx-get="/partials/pipelines/{running}"' in viewer.get(f"/pipelines/{running}").text
        assert 'id="pipeline-live"' in viewer.get(f"/partials/pipelines/{running}").text
        assert "hx-get" not in viewer.get(f"/partials/pipelines/{done}").text, "an ended run is not refreshed"
        assert viewer.get(f"/pipelines/{running}/cancel").status_code == 403
        token = token_of(viewer.get(f"/pipelines/{running}"))
        assert viewer.post(f"/pipelines/{running}/cancel", data={"csrf": token}).status_code == 403
        assert viewer.get("/pipelines/999").status_code == 404 and viewer.get("/pipelines/x").status_code == 404
    with httpx.Client(base_url=base, auth=ANA, timeout=10) as operator:
        assert 'id="pipeline-cancel"' in operator.get(f"/pipelines/{running}").text
        assert 'id="pipeline-cancel"' not in operator.get(f"/pipelines/{done}").text, "it has ended"
        review = operator.get(f"/pipelines/{running}/cancel")
        assert review.status_code == 200 and "step <strong>1 of 4 (fetch)" in review.text
        assert operator.post(f"/pipelines/{running}/cancel").status_code == 403, "no CSRF token"
        answer = operator.post(f"/pipelines/{running}/cancel", data={"csrf": token_of(review)})
        assert answer.status_code == 303
        shown = operator.get(answer.headers["location"])
        assert f"Pipeline run {running} cancelled" in shown.text and 'data-state="cancelled"' in shown.text
    assert PipelineOps(queue).get(running).state == "cancelled"
