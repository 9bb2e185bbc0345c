"""The REST API (/api/v1) on a real uvicorn server and a real PostgreSQL: jobs (pages, filters, cursors, get,
enqueue with payload validation, retry, cancel, delete, bulk by filter), pauses, kinds, shards, workers,
stats, activity, the audit log, schedules (every rule, every operation), the errors (422 naming the field,
404, 409), and security: roles, CSRF, tokens, and no secret in any response."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import finejobs
from finejobs.testing import FakeClock
from finejobs.web import Access, Principal, hash_password
from finejobs.web.security import Gate
from tests.conftest import T0
from tests.webserver import serve

TOKEN = "ci-operator-token-0123456789-abcdefghij"
VIEWER_TOKEN = "grafana-viewer-token-0123456789-abcdefg"
SECRET = "a console secret for the tests, 32+ bytes"
PASSWORDS = {"ana": "ana-password-1", "vic": "vic-password-1"}
DB_PASSWORD = "s3cret-db-pw"


class Dose(BaseModel):
    patient_id: int
    dose: str = "08:00"


@pytest.fixture(scope="module")
def access() -> Access:
    return Access.build(users={"ana": ("operator", hash_password(PASSWORDS["ana"])),
                               "vic": ("viewer", hash_password(PASSWORDS["vic"]))},
                        tokens={"ci": ("operator", TOKEN), "grafana": ("viewer", VIEWER_TOKEN)})


@pytest.fixture
def app(queue: finejobs.Queue, clock: FakeClock) -> finejobs.Queue:
    @queue.job("dosage.alert")
    def alert(payload: Dose) -> None:
        pass

    @queue.job("ping", retry=finejobs.Retry(max_attempts=1))
    def ping(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise RuntimeError(f"gateway at postgresql://sms:{DB_PASSWORD}@gw.example/db refused")

    return queue


@pytest.fixture
def base(app: finejobs.Queue, access: Access) -> Iterator[str]:
    with serve(app, access=access, secret=SECRET) as url:
        yield url + "/api/v1"


@pytest.fixture
def api(base: str) -> Iterator[httpx.Client]:
    """An operator authenticated by a bearer token (no CSRF token needed)."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        yield client


def basic(user: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def csrf(access: Access, user: str, role: str) -> str:
    return Gate(access, SECRET.encode()).csrf_token(Principal(user, role, "basic"))  # type: ignore[arg-type]


def locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [p["loc"] for p in response.json()["detail"]]


def enqueue(api: httpx.Client, kind: str = "ping", payload: dict[str, Any] | None = None, **options: Any) -> Any:
    response = api.post("/jobs", json={"kind": kind, "payload": payload or {}, **options})
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------- jobs


def test_schema_lists_every_endpoint(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    api_paths = {p.removeprefix("/api/v1") for p in paths if p.startswith("/api/v1")}
    assert {"/jobs", "/jobs/count", "/jobs/{job_id}", "/jobs/{job_id}/retry", "/jobs/{job_id}/cancel", "/jobs/bulk",
            "/stats", "/activity", "/kinds", "/shards", "/pauses", "/workers", "/audit", "/schedules",
            "/schedules/{name}", "/schedules/{name}/runs", "/schedules/{name}/next-fires",
            "/schedules/{name}/pause", "/schedules/{name}/resume", "/schedules/{name}/run-now",
            "/schedules/{name}/skip-next", "/schedules/pause-all", "/schedules/resume-all"} <= api_paths


def test_list_filters_and_cursor_pages(api: httpx.Client, clock: FakeClock) -> None:
    ids = [enqueue(api, "ping", {"n": i}, shard="north" if i % 2 else "south")["id"] for i in range(7)]
    later = enqueue(api, "dosage.alert", {"patient_id": 1}, run_at=(T0 + timedelta(hours=1)).isoformat())
    first = api.get("/jobs", params={"limit": 3}).json()
    assert [j["id"] for j in first["jobs"]] == [later["id"], ids[6], ids[5]] and first["next_cursor"]
    seen, cursor = [], None
    while True:
        page = api.get("/jobs", params={"kind": "ping", "limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    north = api.get("/jobs", params={"shard": "north"}).json()["jobs"]
    assert [j["id"] for j in north] == [ids[5], ids[3], ids[1]]
    assert [j["id"] for j in api.get("/jobs", params={"state": "scheduled"}).json()["jobs"]] == [later["id"]]
    assert api.get("/jobs/count", params={"state": "available"}).json() == {"count": 7, "at_least": False}
    window = {"created_after": T0.isoformat(), "created_before": (T0 + timedelta(seconds=1)).isoformat()}
    assert api.get("/jobs/count", params=window).json()["count"] == 8
    # a cursor belongs to its filter; bad values name their parameter
    assert locs(api.get("/jobs", params={"kind": "dosage.alert", "cursor": first["next_cursor"]})) == \
        [["query", "cursor"]]
    assert locs(api.get("/jobs", params={"state": "lost"})) == [["query", "state"]]
    assert locs(api.get("/jobs", params={"limit": 0})) == [["query", "limit"]]
    assert locs(api.get("/jobs", params={"shard": "No Such"})) == [["query", "shard"]]
    assert locs(api.get("/jobs", params={"kind": "a\x00b"})) == [["query", "kind"]]
    assert locs(api.get("/jobs", params={"created_after": "2026-11-22T08:00:00"})) == [["query", "created_after"]]
    assert locs(api.get("/jobs/count", params={"created_after": T0.isoformat(), "created_before": T0.isoformat()})) \
        == [["query", "created_after"]]


def test_get_one_job(api: httpx.Client) -> None:
    job = enqueue(api, "dosage.alert", {"patient_id": 42})
    got = api.get(f"/jobs/{job['id']}").json()
    assert got["payload"] == {"patient_id": 42, "dose": "08:00"} and got["state"] == "available"
    assert got["run_at"] in ("2026-11-22T08:00:00Z", "2026-11-22T08:00:00+00:00")
    missing = api.get("/jobs/987654")
    assert missing.status_code == 404 and "987654" in missing.json()["detail"]
    assert locs(api.get("/jobs/0")) == [["path", "job_id"]]
    assert locs(api.get(f"/jobs/{2**63}")) == [["path", "job_id"]]
    assert locs(api.get(f"/jobs/{job['id']}", params={"database": "elsewhere"})) == [["query", "database"]]


def test_enqueue_validates_the_payload_and_writes_nothing_when_refused(api: httpx.Client, app: finejobs.Queue) -> None:
    job = enqueue(api, "dosage.alert", {"patient_id": 7, "dose": "20:00"}, shard="north", priority=5,
                  unique_key="dose:7", expires_at=(T0 + timedelta(hours=2)).isoformat())
    assert (job["kind"], job["shard"], job["priority"], job["unique_key"]) == ("dosage.alert", "north", 5, "dose:7")
    assert app.get(job["id"]).payload == {"patient_id": 7, "dose": "20:00"}
    refused = [
        ({"kind": "dosage.alert", "payload": {"patient_id": "seven"}}, [["body", "payload", "patient_id"]]),
        ({"kind": "dosage.alert", "payload": {}}, [["body", "payload", "patient_id"]]),
        ({"kind": "dosage.alert", "payload": {"patient_id": 1, "extra": 1}}, [["body", "payload", "extra"]]),
        ({"kind": "no.such.kind", "payload": {}}, [["body", "kind"]]),
        ({"kind": "ping", "payload": {"x": "a\x00"}}, [["body", "payload", "x"]]),
        ({"kind": "ping", "shard": "Bad Shard"}, [["body", "shard"]]),
        ({"kind": "ping", "priority": 10**6}, [["body", "priority"]]),
        ({"kind": "ping", "unique_key": "k\x00"}, [["body", "unique_key"]]),
        ({"kind": "ping", "run_at": "2026-11-22T10:00:00+00:00", "expires_at": "2026-11-22T09:00:00+00:00"},
         [["body", "expires_at"]]),
        ({"kind": "ping", "run_at": "2026-11-22T10:00:00"}, [["body", "run_at"]]),
    ]
    for body, expected in refused:
        assert locs(api.post("/jobs", json=body)) == expected, body
    unknown = api.post("/jobs", json={"kind": "no.such.kind"}).json()["detail"][0]
    assert "no.such.kind" in unknown["msg"] and unknown["type"] == "unknown_kind_error"
    assert api.get("/jobs/count").json()["count"] == 1  # nothing written by the refusals


def test_retry_cancel_delete_one_job(api: httpx.Client, app: finejobs.Queue) -> None:
    job = enqueue(api)
    assert api.post(f"/jobs/{job['id']}/retry").status_code == 409  # it is available: nothing to retry
    cancelled = api.post(f"/jobs/{job['id']}/cancel", json={"reason": "patient opted out"}).json()
    assert cancelled["state"] == "cancelled"
    assert api.post(f"/jobs/{job['id']}/cancel").status_code == 409
    retried = api.post(f"/jobs/{job['id']}/retry").json()
    assert retried["state"] == "available"
    assert locs(api.post(f"/jobs/{job['id']}/cancel", json={"reason": "x" * 9000})) == [["body", "reason"]]
    deleted = api.delete(f"/jobs/{job['id']}").json()
    assert deleted["id"] == job["id"] and api.get(f"/jobs/{job['id']}").status_code == 404
    assert api.delete(f"/jobs/{job['id']}").status_code == 404

    answers: list[httpx.Response] = []

    @app.job("self.delete")
    def self_delete(payload: dict[str, Any], ctx: finejobs.JobContext) -> None:  # asks, while running, to delete it
        answers.append(api.delete(f"/jobs/{ctx.job.id}"))

    me = app.enqueue("self.delete", {})
    app.worker(listen=False).work_once()
    assert answers[0].status_code == 409 and "running" in answers[0].json()["detail"]
    assert app.get(me.id).state == "succeeded"


def test_bulk_by_filter_dry_run_then_real(api: httpx.Client, app: finejobs.Queue) -> None:
    for i in range(5):
        enqueue(api, "ping", {"n": i}, shard="north")
    enqueue(api, "ping", {}, shard="south")
    filt = {"shard": "north"}
    dry = api.post("/jobs/bulk", json={"action": "cancel", "filter": filt, "dry_run": True}).json()
    assert (dry["matched"], dry["changed"], dry["dry_run"]) == (5, 0, True)
    assert api.get("/jobs/count", params={"state": "cancelled"}).json()["count"] == 0
    done = api.post("/jobs/bulk", json={"action": "cancel", "filter": filt, "reason": "district closed"}).json()
    assert (done["matched"], done["changed"], done["filter"]) == (5, 5, filt)
    retried = api.post("/jobs/bulk", json={"action": "retry", "filter": {"state": "cancelled"}}).json()
    assert retried["changed"] == 5
    assert api.get("/jobs/count", params={"state": "available"}).json()["count"] == 6
    assert locs(api.post("/jobs/bulk", json={"action": "delete", "filter": {}})) == [["body", "filter"]]
    assert locs(api.post("/jobs/bulk", json={"action": "delete", "filter": {"database": "default"}})) == \
        [["body", "filter"]]
    assert locs(api.post("/jobs/bulk", json={"action": "retry", "filter": {"state": "succeeded"}})) == \
        [["body", "filter", "state"]]
    assert locs(api.post("/jobs/bulk", json={"action": "retry", "filter": {"colour": "red"}})) == \
        [["body", "filter", "colour"]]
    assert locs(api.post("/jobs/bulk", json={"action": "retry", "filter": {"kind": "ping"}, "reason": "x"})) == \
        [["body", "reason"]]
    assert locs(api.post("/jobs/bulk", json={"action": "retry", "filter": {"kind": "a\x00"}})) == \
        [["body", "filter", "kind"]]
    deleted = api.post("/jobs/bulk", json={"action": "delete", "filter": {"kind": "ping"}}).json()
    assert deleted["changed"] == 6 and api.get("/jobs/count").json()["count"] == 0
    actions = [e["action"] for e in api.get("/audit").json()]
    assert actions[:3] == ["delete matching", "retry matching", "cancel matching"]


# ---------------------------------------------------------------- pauses, kinds, shards, workers, stats, audit


def test_pause_and_resume_shards_and_kinds(api: httpx.Client) -> None:
    enqueue(api, "ping", shard="north")
    made = api.post("/pauses", json={"shard": "north", "reason": "maintenance"}).json()
    assert (made["shard"], made["kind"], made["paused_by"], made["reason"]) == ("north", None, "web:ci", "maintenance")
    api.post("/pauses", json={"kind": "ping"})
    assert [(p["kind"], p["shard"]) for p in api.get("/pauses").json()] == [(None, "north"), ("ping", None)]
    assert {s["name"]: s["paused"] for s in api.get("/shards").json()} == {"north": True}
    kinds = {k["name"]: k for k in api.get("/kinds").json()}
    assert kinds["ping"]["paused"] and not kinds["dosage.alert"]["paused"]
    assert kinds["dosage.alert"]["payload_schema"]["required"] == ["patient_id"]
    assert [p["shard"] for p in api.get("/stats", params={"fresh": True}).json()["paused"]] == ["north", None]
    assert api.delete("/pauses", params={"shard": "north"}).json() == {"resumed": True}
    assert api.delete("/pauses", params={"shard": "north"}).json() == {"resumed": False}
    assert api.delete("/pauses", params={"kind": "ping"}).json() == {"resumed": True}
    assert api.get("/pauses").json() == []
    assert locs(api.post("/pauses", json={})) == [["body"]]
    assert locs(api.post("/pauses", json={"shard": "North!"})) == [["body", "shard"]]
    assert locs(api.delete("/pauses", params={"kind": "x" * 201})) == [["query", "kind"]]


def test_stats_activity_workers_shards_and_audit(api: httpx.Client, app: finejobs.Queue, clock: FakeClock) -> None:
    enqueue(api, "ping", {"n": 1}, shard="north")
    enqueue(api, "ping", {"fail": True}, shard="north")
    enqueue(api, "dosage.alert", {"patient_id": 3}, shard="south")
    worker = app.worker(listen=False, shards=["north"])
    assert isinstance(worker, finejobs.Worker)
    clock.advance(timedelta(seconds=30))
    worker.work_once()
    clock.advance(timedelta(seconds=1))
    assert worker.registry is not None
    worker.registry.run_once(clock())
    stats = api.get("/stats", params={"fresh": True}).json()
    assert (stats["by_state"]["succeeded"], stats["by_state"]["failed"], stats["total"]) == (1, 1, 3)
    assert stats["by_kind"]["ping"] == {"succeeded": 1, "failed": 1}
    assert stats["lag_seconds"] == {"south": 31.0}
    activity = api.get("/activity", params={"minutes": 5}).json()
    assert (sum(activity["succeeded"]), sum(activity["failed"]), len(activity["lag_seconds"])) == (1, 1, 5)
    assert locs(api.get("/activity", params={"minutes": 0})) == [["query", "minutes"]]
    [registered] = api.get("/workers").json()
    assert (registered["id"], registered["shards"], registered["alive"]) == (worker.worker_id, ["north"], True)
    shards = {s["name"]: s for s in api.get("/shards").json()}
    assert shards["north"]["counts"] == {"succeeded": 1, "failed": 1} and shards["south"]["unfinished"] == 1
    failed = api.get("/jobs", params={"state": "failed"}).json()["jobs"][0]
    assert failed["errors"][0]["error"] == "RuntimeError"
    assert DB_PASSWORD not in str(failed) and "***" in failed["errors"][0]["message"]
    entries = api.get("/audit", params={"limit": 2}).json()
    assert [e["action"] for e in entries] == ["enqueue", "enqueue"] and entries[0]["actor"] == "web:ci"
    older = api.get("/audit", params={"before": entries[-1]["id"]}).json()
    assert [e["id"] for e in older] == [entries[-1]["id"] - 1]
    assert locs(api.get("/audit", params={"before": 0})) == [["query", "before"]]


# ---------------------------------------------------------------- security


def test_a_viewer_cannot_retry(base: str, access: Access, app: finejobs.Queue) -> None:
    job = app.enqueue("ping", {})
    app.cancel(job.id)
    for headers in (basic("vic") | {"X-CSRF-Token": csrf(access, "vic", "viewer")},
                    {"Authorization": f"Bearer {VIEWER_TOKEN}"}):
        refused = httpx.post(f"{base}/jobs/{job.id}/retry", headers=headers)
        assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
        assert httpx.get(f"{base}/jobs/{job.id}", headers=headers).json()["state"] == "cancelled"
    assert app.get(job.id).state == "cancelled"
    assert app.get(job.id).max_attempts == job.max_attempts  # unchanged


def test_csrf_token_and_credentials(base: str, access: Access, app: finejobs.Queue) -> None:
    job = app.enqueue("ping", {})
    app.cancel(job.id)
    url = f"{base}/jobs/{job.id}/retry"
    missing = httpx.post(url, headers=basic("ana"))
    assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
    wrong = httpx.post(url, headers=basic("ana") | {"X-CSRF-Token": csrf(access, "vic", "viewer")})
    assert wrong.status_code == 403
    assert app.get(job.id).state == "cancelled"
    done = httpx.post(url, headers=basic("ana") | {"X-CSRF-Token": csrf(access, "ana", "operator")})
    assert done.status_code == 200 and done.json()["state"] == "available"
    assert httpx.post(f"{base}/jobs/{job.id}/cancel", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    anonymous = httpx.get(f"{base}/jobs")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{base}/jobs", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert httpx.get(f"{base}/jobs", headers=basic("vic") | {"Authorization": "Basic YW5hOndyb25n"}).status_code == 401
    assert httpx.get(f"{base}/stats", headers=basic("vic")).status_code == 200  # reading needs no CSRF token
    actors = [(e["actor"], e["action"]) for e in httpx.get(f"{base}/audit", headers=basic("vic")).json()]
    assert actors[:2] == [("web:ci", "cancel"), ("web:ana", "retry")]


def test_no_secret_in_any_response(base: str, api: httpx.Client, app: finejobs.Queue) -> None:
    enqueue(api, "ping", {"fail": True})
    app.worker(listen=False).work_once()
    api.post("/schedules", json={"name": "s", "kind": "ping", "rule": {"type": "every", "minutes": 5}})
    bodies = [api.get(path).text for path in ("/jobs", "/stats", "/activity", "/kinds", "/shards", "/pauses",
                                              "/workers", "/audit", "/schedules", "/schedules/s", "/jobs/1",
                                              "/schedules/s/runs", "/openapi.json")]
    bodies.append(httpx.get(f"{base}/jobs", headers={"Authorization": "Bearer wrong"}).text)
    text = "\n".join(bodies)
    forbidden = [TOKEN, VIEWER_TOKEN, DB_PASSWORD, SECRET, *PASSWORDS.values(), "scrypt$"]
    assert not [s for s in forbidden if s in text]


# ---------------------------------------------------------------- schedules

RULES: dict[str, tuple[dict[str, Any], str, str]] = {  # name: (rule, its words, its first fire)
    "every-counted": ({"type": "every", "minutes": 15, "count": 3, "start": "2026-11-22T09:00:00+00:00"},
                      "every 15 minutes from 2026-11-22 09:00:00 (UTC), 3 times", "2026-11-22T09:00:00"),
    "every-until": ({"type": "every", "days": 1, "start": "2026-11-23T06:00:00+01:00", "tz": "Europe/Madrid",
                     "until": "2026-11-30T06:00:00+01:00"}, "every 1 day from", "2026-11-23T05:00:00"),
    "weekly": ({"type": "weekly", "days": ["MO", "Thursday"], "at": "09:30", "tz": "Africa/Dar_es_Salaam"},
               "Monday", "2026-11-23T06:30:00"),
    "last-monday": ({"type": "monthly", "weekday": "MO", "nth": -1, "at": "06:00"}, "last Monday",
                    "2026-11-30T06:00:00"),
    "month-day": ({"type": "monthly", "day": 15, "every": 1}, "every month", "2026-12-15T00:00:00"),
    "yearly": ({"type": "yearly", "month": 1, "day": 21, "at": "07:00"}, "21 January", "2027-01-21T07:00:00"),
    "first-sunday-march": ({"type": "yearly", "month": 3, "weekday": "SU", "nth": 1}, "first Sunday",
                           "2027-03-07T00:00:00"),
    "cron": ({"type": "cron", "expr": "0 6 * * MON", "tz": "Africa/Dar_es_Salaam"}, "At 06:00 on Monday",
             "2026-11-23T03:00:00"),
    "once": ({"type": "once", "at": "2026-12-01T09:00:00+00:00"}, "once at 2026-12-01 09:00:00", "2026-12-01T09:00:00"),
    "daily": ({"type": "daily_at", "times": ["00:00", "12:00"], "tz": "UTC"}, "daily at 00:00, 12:00",
              "2026-11-22T12:00:00"),
    "rrule": ({"type": "rrule", "rrule": "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=6;BYMINUTE=0;COUNT=2",
               "start": "2026-11-01T00:00:00+00:00"}, "2 times",
              "2026-11-27T06:00:00"),
    "adaptive": ({"type": "adaptive", "on_success": 300, "on_idle": 1800}, "adaptive", "2026-11-22T08:00:00"),
}


def test_create_every_rule_with_words_next_fires_and_runs_left(api: httpx.Client) -> None:
    for name, (rule, words, first) in RULES.items():
        made = api.post("/schedules", json={"name": name, "kind": "ping", "rule": rule})
        assert made.status_code == 201, (name, made.text)
        shown = made.json()
        assert words in shown["rule_text"], (name, shown["rule_text"])
        assert shown["next_fire_at"].startswith(first), (name, shown["next_fire_at"])
        assert shown["next_fires"][0].startswith(first) and shown["status"] == "active"
        again = api.patch(f"/schedules/{name}", json={"rule": shown["rule"]})  # the rule it answers is taken back
        assert again.status_code == 200 and again.json()["rule_text"] == shown["rule_text"], (name, again.text)
    listed = {s["name"]: s for s in api.get("/schedules").json()}
    assert list(listed) == sorted(RULES)
    assert (listed["every-counted"]["runs_left"], listed["cron"]["runs_left"]) == (3, None)
    assert listed["every-until"]["runs_left"] == 8 and listed["rrule"]["runs_left"] == 2
    assert len(api.get("/schedules/every-counted").json()["next_fires"]) == 3
    assert len(api.get("/schedules/cron").json()["next_fires"]) == 10
    fires = api.get("/schedules/weekly/next-fires", params={"n": 4}).json()["next_fires"]
    assert [f[:10] for f in fires] == ["2026-11-23", "2026-11-26", "2026-11-30", "2026-12-03"]
    latest = api.get("/schedules", params={"sort": "next", "descending": True}).json()
    assert latest[0]["name"] == "first-sunday-march"
    assert [s["name"] for s in api.get("/schedules", params={"search": "MONDAY"}).json()] == ["last-monday"]
    assert api.get("/schedules", params={"search": "100%"}).json() == []
    assert locs(api.get("/schedules", params={"search": "a\x00"})) == [["query", "search"]]
    assert locs(api.get("/schedules", params={"sort": "colour"})) == [["query", "sort"]]


def test_schedule_refusals_name_the_field(api: httpx.Client) -> None:
    ok: dict[str, Any] = {"name": "s", "kind": "dosage.alert", "payload": {"patient_id": 1},
          "rule": {"type": "cron", "expr": "* * * * *"}}
    cases: list[tuple[dict[str, Any], list[list[Any]]]] = [
        ({"rule": {"type": "cron", "expr": "61 * * * *"}}, [["body", "rule", "cron"]]),
        ({"rule": {"type": "cron", "expr": "* * * * *", "tz": "Mars/Olympus"}}, [["body", "rule", "cron", "tz"]]),
        ({"rule": {"type": "every", "minutes": 5, "count": 2}}, [["body", "rule", "every", "count"]]),
        ({"rule": {"type": "every"}}, [["body", "rule", "every"]]),
        ({"rule": {"type": "every", "days": 10**12}}, [["body", "rule", "every"]]),
        ({"rule": {"type": "monthly", "weekday": "MO"}, "start": "2026-12-01T00:00:00+00:00",
          "end": "2026-12-02T00:00:00+00:00"}, [["body", "rule"]]),  # it could never fire between them
        ({"rule": {"type": "monthly", "weekday": "MO", "day": 3}}, [["body", "rule", "monthly"]]),
        ({"rule": {"type": "weekly", "days": ["Funday"]}}, [["body", "rule", "weekly", "days", 0]]),
        ({"rule": {"type": "monthly", "weekday": "MO", "nth": 9}}, [["body", "rule", "monthly", "nth"]]),
        ({"rule": {"type": "daily_at", "times": ["25:00"]}}, [["body", "rule", "daily_at"]]),
        ({"rule": {"type": "sometimes"}}, [["body", "rule"]]),
        ({"payload": {"patient_id": "x"}}, [["body", "payload", "patient_id"]]),
        ({"misfire": "often"}, [["body", "misfire"]]),
        ({"start": "2026-12-01T00:00:00+00:00", "end": "2026-11-01T00:00:00+00:00"}, [["body", "end"]]),
        ({"shard": "Bad Shard"}, [["body", "shard"]]),
        ({"name": "a\x00b"}, [["body", "name"]]),
    ]
    for change, expected in cases:
        assert locs(api.post("/schedules", json={**ok, **change})) == expected, change
    assert api.get("/schedules").json() == []  # nothing written
    assert api.post("/schedules", json=ok).status_code == 201
    taken = api.post("/schedules", json=ok)
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    assert locs(api.patch("/schedules/s", json={})) == [["body"]]
    assert locs(api.patch("/schedules/s", json={"misfire": None})) == [["body", "misfire"]]
    assert locs(api.patch("/schedules/s", json={"payload": {"patient_id": "x"}})) == [["body", "payload", "patient_id"]]
    assert api.patch("/schedules/nope", json={"description": "x"}).status_code == 404
    assert locs(api.get("/schedules/" + "n" * 201)) == [["path", "name"]]
    assert api.get("/schedules/nope").status_code == 404


def test_every_schedule_operation(api: httpx.Client, app: finejobs.Queue, clock: FakeClock) -> None:
    made = api.post("/schedules", json={
        "name": "reports/daily", "kind": "ping", "rule": {"type": "every", "hours": 1}, "description": "hourly",
        "payload": {"fail": True}, "priority": 3, "max_attempts": 1, "misfire": "skip", "misfire_grace_seconds": 30,
        "overlap": "allow", "expires_in_seconds": 600})
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["misfire"], shown["overlap"], shown["expires_in_seconds"], shown["priority"]) == \
        ("skip", "allow", 600.0, 3)
    edited = api.patch("/schedules/reports/daily", json={"description": "every hour", "expires_in_seconds": None,
                                                          "rule": {"type": "every", "minutes": 30}}).json()
    assert (edited["description"], edited["expires_in_seconds"], edited["rule_text"]) == \
        ("every hour", None, "every 30 minutes")
    assert api.post("/schedules/reports/daily/pause").json()["status"] == "paused"
    assert api.post("/schedules/reports/daily/resume").json()["status"] == "active"
    before = api.get("/schedules/reports/daily").json()["next_fire_at"]
    skipped = api.post("/schedules/reports/daily/skip-next").json()
    assert skipped["next_fire_at"] > before and skipped["skipped"] == 1
    started = api.post("/schedules/reports/daily/run-now").json()
    assert started["name"] == "reports/daily" and app.get(started["job_id"]).kind == "ping"
    app.worker(listen=False).work_once()
    [run] = api.get("/schedules/reports/daily/runs").json()
    assert (run["job_id"], run["state"], run["outcome"]) == (started["job_id"], "failed", "error")
    assert run["error"].startswith("RuntimeError") and DB_PASSWORD not in run["error"]
    detail = api.get("/schedules/reports/daily").json()
    assert detail["recent_runs"] == [run] and detail["status"] == "failed" and len(detail["next_fires"]) == 10

    api.post("/schedules", json={"name": "second", "kind": "dosage.alert", "payload": {"patient_id": 1},
                                 "rule": {"type": "cron", "expr": "0 * * * *"}, "overlap": "skip"})
    assert api.post("/schedules/second/run-now").status_code == 200
    busy = api.post("/schedules/second/run-now")
    assert busy.status_code == 409 and "not finished" in busy.json()["detail"]
    clock.advance(timedelta(seconds=1))  # one run per schedule and moment
    assert api.post("/schedules/second/run-now", json={"force": True}).status_code == 200
    assert api.post("/schedules/pause-all", json={"kind": "dosage.alert"}).json() == {"names": ["second"]}
    assert sorted(api.post("/schedules/pause-all").json()["names"]) == ["reports/daily"]
    assert sorted(api.post("/schedules/resume-all").json()["names"]) == ["reports/daily", "second"]
    assert api.delete("/schedules/second").status_code == 204
    assert api.get("/schedules/second").status_code == 404
    assert api.delete("/schedules/second").status_code == 404
    assert api.post("/schedules/second/pause").status_code == 404
    actions = [e["action"] for e in api.get("/audit", params={"limit": 12}).json()]
    assert actions[:4] == ["schedule delete", "schedule resume all", "schedule resume", "schedule resume"]
    assert "schedule run now" in actions
