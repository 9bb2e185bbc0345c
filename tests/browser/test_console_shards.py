"""The shards page in a real browser: pause a shard while a worker runs, see the worker stop claiming it (its
jobs stay available while other shards' jobs run), resume it, see them run."""

from __future__ import annotations

import time
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import finejobs
from finejobs import Admin, JobState
from tests.browser.helpers import text_of, wait_for, wait_until

PAUSE_SEEN = 1.2  # a worker reads the control table at least every second (and on the pause's NOTIFY at once)





def button(browser: WebDriver, row: str, action: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f'{row} button[data-action="{action}"]')


def test_pause_a_shard_and_see_a_running_worker_stop_claiming_it(queue: finejobs.Queue, console: str,
                                                                  browser: WebDriver) -> None:
    ran: list[str] = []

    @queue.job("dosage.alert")
    def alert(payload: dict[str, Any]) -> None:
        ran.append(payload["shard"])

    with queue.worker(poll_interval=0.05, listen=True) as worker:
        for shard in ("district-1", "district-2"):
            queue.enqueue("dosage.alert", {"shard": shard}, shard=shard)
        wait_until(lambda: sorted(ran) == ["district-1", "district-2"])

        browser.get(f"{console}/shards")
        row = 'tr[data-shard="district-1"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row))
        button(browser, row, "pause").click()
        wait_for(browser, lambda d: "Paused shard district-1" in text_of(d, ".flash"))
        assert "paused" in text_of(browser, row)
        assert "shard district-1" in text_of(browser, "#pauses-table")
        time.sleep(PAUSE_SEEN)

        held = queue.enqueue("dosage.alert", {"shard": "district-1"}, shard="district-1")
        other = queue.enqueue("dosage.alert", {"shard": "district-2"}, shard="district-2")
        wait_until(lambda: queue.get(other.id).state is JobState.SUCCEEDED)
        time.sleep(0.3)
        assert queue.get(held.id).state is JobState.AVAILABLE, "no claim in the paused shard"
        browser.refresh()
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row))
        assert text_of(browser, f'#shards-table {row} td:nth-child(4)') == "1", "one available job waits there"

        button(browser, row, "resume").click()
        wait_for(browser, lambda d: "Resumed shard district-1" in text_of(d, ".flash"))
        wait_until(lambda: queue.get(held.id).state is JobState.SUCCEEDED)
        assert not worker.ended()
    browser.refresh()
    wait_for(browser, lambda d: "Nothing is paused" in text_of(d, "#no-pauses"))
    assert [(e.action, e.target["shard"]) for e in Admin(queue).audit()] == [("resume", "district-1"),
                                                                              ("pause", "district-1")]


def test_pause_a_kind_within_a_shard_with_a_reason(queue: finejobs.Queue, console: str, browser: WebDriver) -> None:
    queue.job("dosage.alert")(lambda payload: None)
    queue.enqueue("dosage.alert", {}, shard="district-4")
    browser.get(f"{console}/shards")
    wait_for(browser, lambda d: d.find_elements(By.ID, "pause-form"))
    browser.find_element(By.CSS_SELECTOR, "#pause-form input[name=kind]").send_keys("dosage.alert")
    browser.find_element(By.CSS_SELECTOR, "#pause-form input[name=shard]").send_keys("district-4")
    browser.find_element(By.CSS_SELECTOR, "#pause-form input[name=reason]").send_keys("gateway <maintenance>")
    browser.find_element(By.ID, "pause-submit").click()
    wait_for(browser, lambda d: "Paused kind dosage.alert in shard district-4" in text_of(d, ".flash"))
    assert "gateway <maintenance>" in text_of(browser, "#pauses-table"), "shown as text, escaped"
    [pause] = Admin(queue).paused()
    assert (pause.kind, pause.shard, pause.reason, pause.paused_by) == ("dosage.alert", "district-4",
                                                                       "gateway <maintenance>", "web:local")
