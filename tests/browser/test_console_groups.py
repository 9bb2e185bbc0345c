"""Groups and pipelines in a real browser: the list draws each group's progress bar; an operator opens a
group, cancels it through the confirmation step and sees it cancelled (checked in the database); a pipeline
run's page draws a bar per step; a viewer sees the pages with no action. ``FINEJOBS_SCREENSHOTS=1`` also
writes docs/img/console-groups.png, console-group.png and console-pipeline.png."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import finejobs
from finejobs import Admin
from finejobs.pipelines import StepContext, pipeline
from finejobs.testing import FakeClock
from finejobs.web import Access, hash_password
from tests.browser.helpers import text_of, wait_for

VIEWER = ("vi", "viewer-pass-1")
OPERATOR = ("op", "operator-pass-1")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture
def seeded(queue: finejobs.Queue, clock: FakeClock) -> finejobs.Queue:
    """"renewals-2026-12-07": sealed, 40 members, 16 done (4 failed), 24 waiting; "tariffs": finished."""
    @queue.job("policy.renew", retry=finejobs.Retry(max_attempts=1))
    def renew(payload: dict[str, Any]) -> None:
        if payload["policy"] % 4 == 1:
            raise ConnectionError(f"insurer gateway refused policy {payload['policy']} (HTTP 503)")

    @queue.job("report.renewals")
    def report(payload: dict[str, Any]) -> None:
        return None

    with queue.group("tariffs", on_complete="report.renewals") as done:
        done.enqueue_many("policy.renew", [{"policy": 4 * n} for n in range(6)])
    worker = queue.worker(listen=False, concurrency=8)
    assert isinstance(worker, finejobs.Worker)
    worker.work_once()
    worker.work_once()  # its callback
    with queue.group("renewals-2026-12-07", on_success="report.renewals", on_failure="report.renewals") as group:
        group.enqueue_many("policy.renew", [{"policy": n} for n in range(40)])
    worker = queue.worker(listen=False, concurrency=4)
    assert isinstance(worker, finejobs.Worker)
    for _ in range(4):  # 4 members every 10 s: a rate and an ETA to show
        clock.advance(10)
        worker.work_once()
    export(queue)
    return queue


def export(queue: finejobs.Queue) -> None:
    """Pipeline "fhir-export" (shard "exports"): run 1 over 60 ids, done; run 2 over 200 ids, half-way."""
    p = pipeline(queue, "fhir-export", chunk_size=20, shard="exports", on_chunk_failure="skip")

    @p.step("fetch-ids")
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        ctx.emit(list(range(params["n"])))

    @p.step("expand", retry=finejobs.Retry(max_attempts=1))
    def expand(ids: list[int], ctx: StepContext) -> None:
        if ids[0] == 40:
            raise ConnectionError("FHIR server answered 502 for patients 40-59")
        ctx.emit([{"patient": i} for i in ids])

    @p.step("write", gated=False)
    def write(rows: list[dict[str, Any]], ctx: StepContext) -> None:
        ctx.emit([len(rows)])

    @p.reduce()
    def report(counts: Iterator[int], ctx: StepContext) -> dict[str, int]:
        return {"written": sum(counts)}

    worker = queue.worker(listen=False, shards=["exports"], concurrency=3, run_scheduler=False, register=False)
    assert isinstance(worker, finejobs.Worker)
    p.start({"n": 60})
    while worker.work_once():
        pass
    p.start({"n": 200})
    for _ in range(5):
        worker.work_once()


def as_user(base: str, user: tuple[str, str]) -> str:
    return base.replace("http://", f"http://{user[0]}:{user[1]}@")


def open_page(browser: WebDriver, address: str, ready: str = "main h1") -> None:
    browser.get(address)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ready))


def test_progress_bars_and_an_operator_cancels_a_group_a_viewer_cannot(
        browser: WebDriver, seeded: finejobs.Queue, serve_console: Callable[..., AbstractContextManager[str]],
        tmp_path: Path) -> None:
    shots = DOCS_IMG if os.environ.get("FINEJOBS_SCREENSHOTS") == "1" else tmp_path
    access = Access.build(users={VIEWER[0]: ("viewer", hash_password(VIEWER[1])),
                                 OPERATOR[0]: ("operator", hash_password(OPERATOR[1]))})
    with serve_console(access=access) as url:
        base = as_user(url, OPERATOR)
        open_page(browser, f"{base}/groups", "#groups-table")
        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-group="renewals-2026-12-07"]')
        bar = row.find_element(By.CSS_SELECTOR, '[role="progressbar"]')
        assert (bar.get_attribute("aria-valuenow"), bar.get_attribute("aria-valuemax")) == ("16", "40")
        widths = [s.size["width"] for s in bar.find_elements(By.CSS_SELECTOR, ".seg")]
        assert len(widths) == 2 and widths[0] > widths[1] > 0, "succeeded, then failed"
        assert abs(sum(widths) - 0.4 * bar.size["width"]) <= 2, "16 of 40 of the bar is filled"
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-group="tariffs"]').get_attribute(
            "data-state") == "succeeded"
        browser.save_screenshot(str(shots / "console-groups.png"))

        row.find_element(By.LINK_TEXT, "renewals-2026-12-07").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "group-problems"))
        assert text_of(browser, "#group-done") == "16 of 40 done"
        assert text_of(browser, "#group-rate") == "30.0/min" and text_of(browser, "#group-eta") == "48 s"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#group-problems tr[data-job]")) == 4
        assert "on failure" in text_of(browser, "#group-callbacks")
        browser.save_screenshot(str(shots / "console-group.png"))
        browser.find_element(By.ID, "group-cancel").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "confirm-cancel"))
        assert text_of(browser, "#cancel-waiting") == "24"
        browser.find_element(By.ID, "confirm-cancel").click()
        wait_for(browser, lambda d: "24 waiting member(s) cancelled" in text_of(d, ".flash"))
        assert browser.find_element(By.ID, "group-state").get_attribute("data-state") == "cancelled"
        assert not browser.find_elements(By.ID, "group-cancel")
        progress = Admin(seeded).groups.get("renewals-2026-12-07").progress
        assert (progress.state, progress.cancelled) == ("cancelled", 24)

        open_page(browser, f"{base}/pipelines", "#pipelines-table")
        assert [r.get_attribute("data-state") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-run]")] == [
            "running", "succeeded"]
        browser.find_element(By.LINK_TEXT, "#2").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "pipeline-steps"))
        assert len(browser.find_elements(By.CSS_SELECTOR, '#pipeline-steps [role="progressbar"]')) == 4
        assert browser.find_elements(By.ID, "pipeline-cancel")
        browser.save_screenshot(str(shots / "console-pipeline.png"))

    with serve_console(access=access) as url:  # another origin: no credentials cached for it
        base = as_user(url, VIEWER)
        open_page(browser, f"{base}/groups", "#groups-table")
        assert browser.find_elements(By.CSS_SELECTOR, '[role="progressbar"]')
        open_page(browser, f"{base}/groups/tariffs", "#group-live")
        assert text_of(browser, ".who") == "vi · viewer"
        assert not browser.find_elements(By.CSS_SELECTOR, "form[method=post], #group-cancel, #group-seal")
        open_page(browser, f"{base}/pipelines/2", "#pipeline-steps")
        assert not browser.find_elements(By.CSS_SELECTOR, "form[method=post], #pipeline-cancel")
