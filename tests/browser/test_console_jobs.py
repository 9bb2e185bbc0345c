"""The jobs pages in a real browser: retry a failed job from its page and see it succeed once a worker runs;
cancel every job matching a filter (count shown, confirmation first), and see the action in the audit log."""

from __future__ import annotations

from typing import Any

import psycopg
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

import finejobs
from finejobs import Admin, JobState
from tests.browser.helpers import text_of, wait_for, wait_until


def test_retry_a_failed_job_from_its_page_and_see_it_succeed(queue: finejobs.Queue, console: str,
                                                              browser: WebDriver) -> None:
    calls: list[int] = []

    @queue.job("dosage.alert", retry=finejobs.Retry(max_attempts=1))
    def alert(payload: dict[str, Any]) -> None:
        calls.append(payload["patient_id"])
        if len(calls) == 1:
            raise ConnectionError("SMS gateway refused the connection")

    job = queue.enqueue("dosage.alert", {"patient_id": 42, "dose": "08:00"}, shard="district-3")
    queue.worker(listen=False).work_once()
    assert queue.get(job.id).state is JobState.FAILED

    browser.get(f"{console}/jobs/{job.id}")
    wait_for(browser, lambda d: "SMS gateway refused" in text_of(d, "#job-attempts"))
    assert "failed" in text_of(browser, "h1")
    assert '"patient_id": 42' in text_of(browser, "#job-payload")
    assert "ConnectionError" in text_of(browser, "#job-timeline")
    assert not browser.find_elements(By.ID, "job-cancel"), "a failed job cannot be cancelled"

    browser.find_element(By.ID, "job-retry").click()
    wait_for(browser, lambda d: "will run again" in text_of(d, ".flash"))
    assert "available" in text_of(browser, "h1")
    assert not browser.find_elements(By.ID, "job-retry"), "no retry for a job that waits to run"

    with queue.worker(poll_interval=0.05):
        wait_until(lambda: queue.get(job.id).state is JobState.SUCCEEDED)
    browser.refresh()
    wait_for(browser, lambda d: "succeeded" in text_of(d, "h1"))
    assert calls == [42, 42]
    assert "Attempt 1" in text_of(browser, "#job-attempts"), "the failed attempt stays on record"
    [entry] = Admin(queue).audit()
    assert (entry.actor, entry.action, entry.target["job"], entry.count) == ("web:local", "retry", job.id, 1)


def test_cancel_every_job_matching_a_filter_with_a_count_and_a_confirmation_first(
        queue: finejobs.Queue, console: str, browser: WebDriver, db: psycopg.Connection[tuple[Any, ...]]) -> None:
    for name in ("report", "alert"):
        queue.job(name)(lambda payload: None)
    queue.enqueue_many("report", [{"n": i} for i in range(30)], shard="district-1")
    queue.enqueue_many("report", [{"n": i} for i in range(7)], shard="district-2")
    queue.enqueue_many("alert", [{"n": i} for i in range(5)], shard="district-1")

    browser.get(f"{console}/jobs")
    wait_for(browser, lambda d: "42" in text_of(d, "#match-count"))
    browser.find_element(By.NAME, "kind").send_keys("report")
    browser.find_element(By.ID, "apply-filter").click()
    wait_for(browser, lambda d: text_of(d, "#match-count").startswith("37 jobs match"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr[data-job]")) == 37

    Select(browser.find_element(By.ID, "bulk-action")).select_by_value("cancel")
    browser.find_element(By.ID, "bulk-review").click()
    count = wait_for(browser, lambda d: text_of(d, "#bulk-count"))
    assert count == "37", "the dry run counts every matching job, not just the page"
    assert "kind report" in text_of(browser, "#bulk-confirm-panel")
    states = dict(db.execute("SELECT kind, count(*) FILTER (WHERE state = 'available') FROM finejobs_jobs "
                             "GROUP BY kind").fetchall())
    assert states == {"report": 37, "alert": 5}, "nothing is changed before the confirmation"

    browser.find_element(By.ID, "bulk-confirm-button").click()
    wait_for(browser, lambda d: "Cancelled 37 of the 37 matching jobs" in text_of(d, ".flash"))
    assert text_of(browser, "#match-count").startswith("37 jobs match"), "back on the same filter"
    rows = db.execute("SELECT kind, state, count(*) FROM finejobs_jobs GROUP BY kind, state ORDER BY kind").fetchall()
    assert rows == [("alert", "available", 5), ("report", "cancelled", 37)]

    browser.get(f"{console}/audit")
    wait_for(browser, lambda d: "cancel matching" in text_of(d, "#audit-table"))
    row = text_of(browser, "#audit-table tbody tr")
    assert "web:local" in row and "kind report" in row and "37" in row


def test_a_bulk_action_needs_a_filter_and_bad_filters_are_refused(queue: finejobs.Queue, console: str,
                                                                  browser: WebDriver) -> None:
    queue.job("report")(lambda payload: None)
    queue.enqueue("report", {})
    browser.get(f"{console}/jobs")
    wait_for(browser, lambda d: text_of(d, "#bulk"))
    assert "Set a filter first" in text_of(browser, "#bulk")
    assert not browser.find_elements(By.ID, "bulk-review")

    browser.get(f"{console}/jobs/bulk?action=delete")
    wait_for(browser, lambda d: "needs a filter" in text_of(d, "#bulk-error"))
    browser.get(f"{console}/jobs?state=bogus")
    wait_for(browser, lambda d: "unknown state 'bogus'" in text_of(d, "#error-message"))
    assert queue.get(1).state is JobState.AVAILABLE
