"""The workers page in a real browser: a running worker, and the local schedules its process runs
(queue.local_schedule: no row of their own, reported through the worker's registry row)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import finejobs
from finejobs import Admin, Every
from tests.browser.helpers import text_of, wait_for, wait_until


def test_the_workers_page_shows_the_local_schedules_of_each_worker(queue: finejobs.Queue, console: str,
                                                                    browser: WebDriver) -> None:
    calls: list[int] = []

    def expire_cache() -> None:
        calls.append(1)

    def failing() -> None:
        raise RuntimeError("cache <server> unreachable")

    queue.job("dosage.alert")(lambda payload: None)  # a worker needs a kind to serve
    queue.local_schedule("cache.expire", expire_cache, Every(seconds=1))
    queue.local_schedule("cache.warm", failing, Every(seconds=1))
    worker = queue.worker(poll_interval=0.05)
    assert isinstance(worker, finejobs.Worker) and worker.registry is not None
    worker.registry.interval = 0.1  # the row is refreshed every 5 s in production; the test need not wait that
    with worker:
        def reported() -> bool:
            entries = {e.name: e for w in Admin(queue).workers() for e in w.local_schedules}
            return set(entries) == {"cache.expire", "cache.warm"} and all(e.runs >= 1 for e in entries.values())
        wait_until(reported)
        browser.get(f"{console}/workers")
        ok, bad = 'tr[data-local-schedule="cache.expire"]', 'tr[data-local-schedule="cache.warm"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ok) and d.find_elements(By.CSS_SELECTOR, bad))
        assert worker.worker_id in text_of(browser, ok) and "success" in text_of(browser, ok)
        assert "every 1 second" in text_of(browser, ok), text_of(browser, ok)
        failed = text_of(browser, bad)
        assert "error" in failed and "cache <server> unreachable" in failed, failed  # shown as text, escaped
    assert calls
