"""The console's pages over real HTTP (uvicorn on 127.0.0.1, the session's PostgreSQL): actions need the
operator role and the CSRF token and write nothing otherwise; nothing a job holds is rendered raw, no
database password is rendered; bad filters are refused with the reason; pages are keyset-paged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import psycopg
import pytest

import finejobs
from finejobs import Admin, JobState
from finejobs.store import libpq_url
from finejobs.web import Access, hash_password
from tests.webserver import serve

ANA, VERA = ("ana", "operator-pass-1"), ("vera", "viewer-pass-1")
ACCESS = Access.build(users={ANA[0]: ("operator", hash_password(ANA[1])), VERA[0]: ("viewer", hash_password(VERA[1]))})


@pytest.fixture
def alert(queue: finejobs.Queue) -> finejobs.JobKind[Any, Any]:
    @queue.job("dosage.alert", retry=finejobs.Retry(max_attempts=1))
    def alert(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise TimeoutError(str(payload.get("why", "gateway timed out")))

    return alert


@pytest.fixture
def failed(queue: finejobs.Queue, alert: finejobs.JobKind[Any, Any]) -> int:
    job = queue.enqueue("dosage.alert", {"fail": True}, shard="district-1")
    queue.worker(listen=False).work_once()
    assert queue.get(job.id).state is JobState.FAILED
    return job.id


@pytest.fixture
def client(queue: finejobs.Queue) -> Iterator[httpx.Client]:
    """An open console (loopback: everyone is the operator ``local``)."""
    with serve(queue) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http


@pytest.fixture
def secured(queue: finejobs.Queue) -> Iterator[str]:
    with serve(queue, access=ACCESS) as url:
        yield url


def token_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text) or re.search(
        r'"x-csrf-token": "([0-9a-f]+)"', page.text)
    assert match, "the page carries its CSRF token"
    return match.group(1)


def audit_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM finejobs_audit").fetchone()
    assert row is not None
    return int(row[0])


ACTIONS = [("/jobs/{id}/retry", {}), ("/jobs/{id}/delete", {}),
           ("/jobs/bulk", {"action": "retry", "kind": "dosage.alert"}),
           ("/jobs/bulk", {"action": "delete", "state": "failed"}),
           ("/pause", {"shard": "district-1"}), ("/pause", {"kind": "dosage.alert"})]


@pytest.mark.parametrize(("path", "fields"), ACTIONS)
def test_an_action_without_its_csrf_token_is_refused_and_writes_nothing(
        client: httpx.Client, failed: int, queue: finejobs.Queue, db: psycopg.Connection[Any], path: str,
        fields: dict[str, str]) -> None:
    target = path.format(id=failed)
    for sent in (fields, {**fields, "csrf": "0" * 40}, {**fields, "csrf": ""}):
        refused = client.post(target, data=sent)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text and "text/html" in refused.headers["content-type"]
    assert queue.get(failed).state is JobState.FAILED
    assert Admin(queue).paused() == [] and audit_count(db) == 0
    token = token_of(client.get(f"/jobs/{failed}"))
    done = client.post(target, data={**fields, "csrf": token})
    assert done.status_code == 303, "with the token it is done"
    assert audit_count(db) == 1


def test_an_action_with_the_token_in_the_htmx_header_is_accepted(client: httpx.Client, failed: int,
                                                                 queue: finejobs.Queue) -> None:
    token = token_of(client.get("/"))
    done = client.post(f"/jobs/{failed}/retry", headers={"x-csrf-token": token, "hx-request": "true"})
    assert done.status_code == 303
    assert queue.get(failed).state is JobState.AVAILABLE


def test_a_viewer_cannot_retry_even_with_a_valid_token(secured: str, failed: int, queue: finejobs.Queue,
                                                       db: psycopg.Connection[Any]) -> None:
    with httpx.Client(base_url=secured, auth=VERA, timeout=10) as viewer:
        page = viewer.get(f"/jobs/{failed}")
        assert page.status_code == 200 and "vera · viewer" in page.text
        assert 'method="post"' not in page.text and "job-retry" not in page.text
        token = token_of(page)
        for path, fields in ACTIONS:
            refused = viewer.post(path.format(id=failed), data={**fields, "csrf": token})
            assert refused.status_code == 403 and "viewer" in refused.text
        assert viewer.get("/jobs/bulk?action=retry&kind=dosage.alert").status_code == 403, "no review step either"
    assert queue.get(failed).state is JobState.FAILED and audit_count(db) == 0
    with httpx.Client(base_url=secured, auth=ANA, timeout=10) as operator:
        token = token_of(operator.get(f"/jobs/{failed}"))
        assert operator.post(f"/jobs/{failed}/retry", data={"csrf": token}).status_code == 303
    [entry] = Admin(queue).audit()
    assert (entry.actor, entry.action) == ("web:ana", "retry")


def test_without_credentials_a_secured_console_asks_for_them(secured: str) -> None:
    answer = httpx.get(f"{secured}/jobs", timeout=10)
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic")
    assert "Credentials required" in answer.text and "csrf" not in answer.text
    wrong = httpx.get(f"{secured}/jobs", auth=(VERA[0], "not-her-password"), timeout=10)
    assert wrong.status_code == 401


def test_nothing_a_job_holds_is_rendered_raw(client: httpx.Client, queue: finejobs.Queue,
                                             alert: finejobs.JobKind[Any, Any]) -> None:
    evil = "<script>alert('x')</script>"
    job = queue.enqueue("dosage.alert", {"fail": True, "why": f"bad {evil}", "note": evil},
                        shard="district-1", unique_key=f"k{evil}")
    queue.worker(listen=False).work_once()
    for path in (f"/jobs/{job.id}", "/jobs", "/jobs?error=script", "/"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text, path
    assert "&lt;script&gt;alert(" in client.get(f"/jobs/{job.id}").text


def test_no_database_password_is_rendered(clean_db: str, clock: Any) -> None:
    """A handler's error quoting the queue's database URL (with its password) shows it masked."""
    info = psycopg.conninfo.conninfo_to_dict(libpq_url(clean_db))
    password = "s3cret-Pa55word"
    url = f"postgresql://{info.get('user', 'postgres')}:{password}@{info.get('host', '127.0.0.1')}:" \
          f"{info.get('port', 5432)}/{info['dbname']}"
    queue = finejobs.Queue(url, clock=clock)
    try:
        @queue.job("leak", retry=finejobs.Retry(max_attempts=1))
        def leak(payload: dict[str, Any]) -> None:
            raise ConnectionError(f"could not reach {url} (password {password})")

        job = queue.enqueue("leak", {"url": url})
        queue.worker(listen=False).work_once()
        with serve(queue) as base, httpx.Client(base_url=base, timeout=10) as http:
            for path in (f"/jobs/{job.id}", "/jobs", "/audit", "/"):
                page = http.get(path)
                assert page.status_code == 200 and password not in page.text, path
            assert "could not reach" in http.get(f"/jobs/{job.id}").text
    finally:
        queue.close()


@pytest.mark.parametrize(("query", "says"), [
    ("state=bogus", "unknown state 'bogus'"),
    ("created_after=yesterday", "created_after: not a date and time"),
    ("created_after=2026-11-22T09:00&created_before=2026-11-22T08:00", "must be before created_before"),
    ("shard=Not%20A%20Shard", "shard"),
    ("kind=" + "k" * 300, "kind"),
    ("limit=0", "limit"),
    ("limit=many", "limit"),
    ("cursor=made-up", "cursor: not a cursor"),
])
def test_a_bad_filter_is_refused_with_its_reason(client: httpx.Client, failed: int, query: str, says: str) -> None:
    page = client.get(f"/jobs?{query}")
    assert page.status_code == 422
    assert says in page.text.replace("&#39;", "'")
    assert 'id="filters"' in page.text, "the form is shown again to correct it"
    assert 'id="jobs-table"' not in page.text


def test_a_bulk_action_without_a_filter_is_refused(client: httpx.Client, failed: int, queue: finejobs.Queue,
                                                   db: psycopg.Connection[Any]) -> None:
    token = token_of(client.get("/jobs"))
    for fields in ({"action": "delete"}, {"action": "retry", "database": "default"}):
        refused = client.post("/jobs/bulk", data={**fields, "csrf": token})
        assert refused.status_code == 422 and "needs a filter" in refused.text
    refused = client.post("/jobs/bulk", data={"action": "explode", "state": "failed", "csrf": token})
    assert refused.status_code == 422 and "action: one of retry, cancel, delete" in refused.text
    refused = client.post("/jobs/bulk", data={"action": "cancel", "state": "failed", "csrf": token})
    assert refused.status_code == 422 and "cancel applies to" in refused.text
    assert queue.get(failed).state is JobState.FAILED and audit_count(db) == 0


def test_the_review_step_counts_and_the_confirmation_acts_on_every_match(
        client: httpx.Client, queue: finejobs.Queue, alert: finejobs.JobKind[Any, Any]) -> None:
    alert.enqueue_many([{"fail": True, "why": f"gateway timeout {i}"} for i in range(120)])
    alert.enqueue_many([{"fail": True, "why": "refused"} for i in range(3)])
    queue.worker(listen=False, concurrency=200).work_once()
    review = client.get("/jobs/bulk?action=retry&error=timeout", headers={"hx-request": "true"})
    assert review.status_code == 200 and "<html" not in review.text, "htmx gets the panel alone"
    assert re.search(r'id="bulk-count">120<', review.text)
    assert 'name="error" value="timeout"' in review.text
    done = client.post("/jobs/bulk", data={"action": "retry", "error": "timeout", "csrf": token_of(review)})
    assert done.status_code == 303
    shown = client.get(done.headers["location"])
    assert "Retried 120 of the 120 matching jobs." in shown.text
    assert Admin(queue).count(finejobs.JobFilter(state="failed")).count == 3


def test_a_made_up_flash_message_is_not_shown(client: httpx.Client, failed: int) -> None:
    page = client.get("/jobs?done=bulk&arg=delete&arg=9999&arg=9999&sig=0123456789abcdef01234567")
    assert "Deleted" not in page.text
    page = client.get(f"/jobs/{failed}?done=retried&arg={failed}")
    assert "will run again" not in page.text


def test_the_list_is_keyset_paged_without_repeats_or_gaps(client: httpx.Client, queue: finejobs.Queue,
                                                          alert: finejobs.JobKind[Any, Any]) -> None:
    made = {j.id for j in alert.enqueue_many([{} for _ in range(120)])}
    seen: list[int] = []
    address: str | None = "/jobs?limit=50"
    pages = 0
    while address is not None:
        page = client.get(address)
        assert page.status_code == 200
        seen += [int(i) for i in re.findall(r'<tr data-job="(\d+)">', page.text)]
        assert "120</strong> jobs match" in page.text
        found = re.search(r'href="([^"]+)" id="next-page"', page.text)
        address = urljoin("/jobs", found.group(1).replace("&amp;", "&")) if found else None
        pages += 1
    assert pages == 3 and len(seen) == 120 and set(seen) == made
    assert seen == sorted(seen, reverse=True), "newest first"


def test_a_job_that_does_not_exist_is_a_404_page(client: httpx.Client) -> None:
    for path in ("/jobs/999999", "/jobs/abc", "/jobs/99999999999999999999"):
        page = client.get(path)
        assert page.status_code == 404 and "no job with id" in page.text and "text/html" in page.headers["content-type"]


def test_the_overview_draws_charts_and_refreshes_its_live_part(client: httpx.Client, failed: int) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.text.count("<svg") == 2 and "NaN" not in page.text and "nan," not in page.text
    assert 'hx-get="/partials/overview"' in page.text and 'hx-trigger="every 5s"' in page.text
    assert "server time" in page.text.lower() and "2026-11-22 08:00:00" in page.text
    live = client.get("/partials/overview")
    assert live.status_code == 200 and "<html" not in live.text
    assert 'id="server-time" hx-swap-oob="true"' in live.text
    assert 'id="live"' in live.text and "<svg" in live.text


def test_mounted_under_a_prefix_every_link_form_and_redirect_keeps_it(queue: finejobs.Queue, failed: int) -> None:
    from fastapi import FastAPI

    import finejobs.web

    parent = FastAPI()
    parent.mount("/ops", finejobs.web.app(queue))
    with finejobs.web.serving(parent) as url, httpx.Client(base_url=url, timeout=10) as http:
        page = http.get(f"/ops/jobs/{failed}")
        assert page.status_code == 200
        assert 'href="/ops/static/console.css"' in page.text and 'href="/ops/jobs?kind=dosage.alert"' in page.text
        assert f'action="/ops/jobs/{failed}/retry"' in page.text
        done = http.post(f"/ops/jobs/{failed}/retry", data={"csrf": token_of(page)})
        assert done.status_code == 303 and done.headers["location"].startswith(f"/ops/jobs/{failed}?")
        assert "will run again" in http.get(done.headers["location"]).text
        assert 'hx-get="/ops/partials/overview"' in http.get("/ops/").text
        assert http.get("/ops/static/console.css").status_code == 200
