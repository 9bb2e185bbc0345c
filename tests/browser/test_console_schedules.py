"""The schedule pages in a real browser: create schedules through the form and see their next fire times
(exactly ``Schedule.next_fires(10)``); pause, resume, skip next and run now by their buttons, each checked in
the database; a refused form keeps what was typed and writes nothing; edit, delete, search, pause all and
resume all; a viewer sees no action. ``FINEJOBS_SCREENSHOTS=1`` also writes docs/img/console-schedules.png
and docs/img/console-schedule.png."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

import finejobs
import finejobs.web
from finejobs import Adaptive, Cron, Every, Once, RRule
from finejobs.runtime.worker import Worker
from finejobs.scheduler import ScheduleNotFound
from finejobs.testing import FakeClock
from tests.browser.helpers import text_of, wait_for

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # the FakeClock's start: a Sunday
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"




def fill(browser: WebDriver, field: str, value: str) -> None:
    element = browser.find_element(By.ID, f"f-{field}")
    element.clear()
    element.send_keys(value)


def choose(browser: WebDriver, field: str, value: str) -> None:
    Select(browser.find_element(By.ID, f"f-{field}")).select_by_value(value)


def submit(browser: WebDriver) -> None:
    browser.find_element(By.ID, "save-schedule").click()


def shown_fires(browser: WebDriver) -> list[str | None]:
    return [t.get_attribute("datetime") for t in browser.find_elements(By.CSS_SELECTOR, "#next-fires time")]


def expected_fires(queue: finejobs.Queue, name: str) -> list[str]:
    return [f.isoformat() for f in queue.schedules.get(name).next_fires(10)]


def click_action(browser: WebDriver, action: str) -> None:
    """Click a schedule action's button and wait for the page it leads to."""
    button = browser.find_element(By.CSS_SELECTOR, f'button[data-action="{action}"]')
    button.click()
    wait_for(browser, lambda d: not _attached(button))


def _attached(element: Any) -> bool:
    try:
        element.is_enabled()
    except Exception:
        return False
    return True


def test_create_weekly_schedule_through_the_form_and_see_its_next_fires(
        queue: finejobs.Queue, console: str, browser: WebDriver, ping: Any) -> None:
    browser.get(f"{console}/schedules/new")
    fill(browser, "name", "mwf-paris")
    fill(browser, "description", "reminders, Mon/Wed/Fri")
    choose(browser, "kind", "ping")
    assert not browser.find_element(By.ID, "f-weekly_at").is_displayed(), "only the chosen rule type's fields"
    choose(browser, "rule_type", "weekly")
    wait_for(browser, lambda d: d.find_element(By.ID, "f-weekly_at").is_displayed())
    for day in ("MO", "WE", "FR"):
        browser.find_element(By.ID, f"f-day-{day}").click()
    fill(browser, "weekly_at", "09:00")
    fill(browser, "tz", "Europe/Paris")
    fill(browser, "payload", '{"district": 3}')
    submit(browser)

    wait_for(browser, lambda d: "/schedules/mwf-paris?" in d.current_url)
    assert "Schedule mwf-paris created." in text_of(browser, ".flash")
    schedule = queue.schedules.get("mwf-paris")
    assert schedule.rule_text == "every week on Monday, Wednesday, Friday at 09:00 (Europe/Paris)"
    assert text_of(browser, "#schedule-rule") == schedule.rule_text
    assert schedule.payload == {"district": 3} and schedule.description == "reminders, Mon/Wed/Fri"
    fires = shown_fires(browser)
    assert fires == expected_fires(queue, "mwf-paris") and len(fires) == 10
    assert fires[:3] == ["2026-11-23T08:00:00+00:00", "2026-11-25T08:00:00+00:00", "2026-11-27T08:00:00+00:00"]
    assert "2026-11-23 09:00:00 CET" in text_of(browser, "#next-fires")  # and in the schedule's timezone


def test_every_two_hours_five_times_then_each_action_by_its_button(
        queue: finejobs.Queue, clock: FakeClock, console: str, browser: WebDriver, ping: Any) -> None:
    browser.get(f"{console}/schedules/new")
    fill(browser, "name", "two-hourly")
    choose(browser, "kind", "ping")
    choose(browser, "rule_type", "interval")
    fill(browser, "interval_every", "2")
    choose(browser, "interval_unit", "hours")
    fill(browser, "count", "5")
    submit(browser)
    wait_for(browser, lambda d: "/schedules/two-hourly?" in d.current_url)
    fires = shown_fires(browser)
    assert fires == expected_fires(queue, "two-hourly")
    assert fires == [(T0 + timedelta(hours=2 * i)).isoformat() for i in range(5)]  # count 5, from now
    assert text_of(browser, "#schedule-left") == "5"

    click_action(browser, "pause")
    assert text_of(browser, "#schedule-status") == "paused" and queue.schedules.get("two-hourly").paused
    click_action(browser, "resume")
    assert text_of(browser, "#schedule-status") == "active" and not queue.schedules.get("two-hourly").paused

    click_action(browser, "skip-next")
    after = queue.schedules.get("two-hourly")
    assert after.next_fire_at == T0 + timedelta(hours=2) and after.skipped == 1
    assert "the next tick is skipped" in text_of(browser, ".flash")
    assert shown_fires(browser) == expected_fires(queue, "two-hourly")
    assert shown_fires(browser)[0] == (T0 + timedelta(hours=2)).isoformat()

    click_action(browser, "run-now")
    runs = queue.schedules.runs("two-hourly")
    assert len(runs) == 1 and f"job {runs[0].job_id} enqueued" in text_of(browser, ".flash")
    assert browser.find_elements(By.CSS_SELECTOR, f'#schedule-history tr[data-job="{runs[0].job_id}"]')

    click_action(browser, "run-now")  # its run is unfinished and overlap is skip: refused, said, nothing made
    assert "not finished" in text_of(browser, ".flash.error")
    assert len(queue.schedules.runs("two-hourly")) == 1
    browser.find_element(By.CSS_SELECTOR, 'input[name="force"]').click()
    clock.advance(timedelta(seconds=1))  # a run is one per moment: the forced one comes a second later
    click_action(browser, "run-now")
    assert len(queue.schedules.runs("two-hourly")) == 2

    # editing the description keeps the next fire (the skipped tick stays skipped); a new interval retimes it
    browser.find_element(By.ID, "edit-schedule").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "f-description"))
    assert browser.find_element(By.ID, "f-count").get_attribute("value") == "5"
    fill(browser, "description", "edited in the browser")
    submit(browser)
    wait_for(browser, lambda d: "updated" in text_of(d, ".flash"))
    edited = queue.schedules.get("two-hourly")
    assert edited.description == "edited in the browser" and edited.next_fire_at == T0 + timedelta(hours=2)
    browser.find_element(By.ID, "edit-schedule").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "f-interval_every"))
    fill(browser, "interval_every", "3")
    submit(browser)
    wait_for(browser, lambda d: "updated" in text_of(d, ".flash"))
    assert queue.schedules.get("two-hourly").rule_text.startswith("every 3 hours")
    assert shown_fires(browser) == expected_fires(queue, "two-hourly")

    browser.find_element(By.ID, "delete-schedule").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "confirm-delete"))
    assert queue.schedules.get("two-hourly")  # not before the confirmation
    browser.find_element(By.ID, "confirm-delete").click()
    wait_for(browser, lambda d: "deleted" in text_of(d, ".flash"))
    with pytest.raises(ScheduleNotFound):
        queue.schedules.get("two-hourly")


def test_a_refused_form_says_why_keeps_what_was_typed_and_writes_nothing(
        queue: finejobs.Queue, console: str, browser: WebDriver, ping: Any) -> None:
    browser.get(f"{console}/schedules/new")
    fill(browser, "name", "bad-cron")
    choose(browser, "kind", "ping")
    choose(browser, "rule_type", "cron")
    fill(browser, "cron", "0 6 * *")
    fill(browser, "description", "<script>alert(1)</script>")
    submit(browser)
    wait_for(browser, lambda d: "fields" in text_of(d, ".flash.error"))
    assert "cron" in text_of(browser, ".flash.error")
    assert browser.find_element(By.ID, "f-cron").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "f-cron").get_attribute("value") == "0 6 * *"
    assert browser.find_element(By.ID, "f-name").get_attribute("value") == "bad-cron"
    assert browser.find_element(By.ID, "f-description").get_attribute("value") == "<script>alert(1)</script>"
    assert Select(browser.find_element(By.ID, "f-rule_type")).first_selected_option.get_attribute("value") == "cron"
    assert queue.schedules.list() == []

    # the same refusal over plain HTTP: 422, and still nothing written
    browser.get(f"{console}/schedules/new")
    token = browser.find_element(By.CSS_SELECTOR, 'input[name="csrf"]').get_attribute("value")
    data = urllib.parse.urlencode({"csrf": token, "name": "bad", "kind": "ping", "rule_type": "weekly",
                                   "weekly_at": "09:00", "misfire": "coalesce", "overlap": "skip"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{console}/schedules", data)
    assert refused.value.code == 422
    assert "days: tick at least one day" in refused.value.read().decode()
    assert queue.schedules.list() == []


def test_list_search_sort_pause_all_and_resume_all(queue: finejobs.Queue, console: str, browser: WebDriver,
                                                    ping: Any) -> None:
    queue.schedules.add("b-hourly", "ping", Every(hours=1), description="north district")
    queue.schedules.add("a-monday", "ping", Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"))
    queue.schedules.add("c-once", "ping", Once(T0 + timedelta(days=3)), paused=True)
    browser.get(f"{console}/schedules")
    rows = browser.find_elements(By.CSS_SELECTOR, "#schedules tbody tr")
    assert [r.get_attribute("data-schedule") for r in rows] == ["a-monday", "b-hourly", "c-once"]
    statuses = [e.get_attribute("data-status") for e in browser.find_elements(By.CSS_SELECTOR, "[data-status]")]
    assert statuses == ["active", "active", "paused"]
    assert "paused" in (browser.find_elements(By.CSS_SELECTOR, "#schedules .state")[2].get_attribute("class") or "")

    browser.find_element(By.CSS_SELECTOR, 'a[data-sort="next"]').click()
    wait_for(browser, lambda d: "sort=next" in d.current_url)
    order = [r.get_attribute("data-schedule") for r in browser.find_elements(By.CSS_SELECTOR, "#schedules tbody tr")]
    assert order == [s.name for s in queue.schedules.list(sort="next")] == ["b-hourly", "a-monday", "c-once"]
    browser.find_element(By.CSS_SELECTOR, 'a[data-sort="next"]').click()  # again: descending
    wait_for(browser, lambda d: "desc=1" in d.current_url)
    order = [r.get_attribute("data-schedule") for r in browser.find_elements(By.CSS_SELECTOR, "#schedules tbody tr")]
    assert order == ["c-once", "a-monday", "b-hourly"]

    fill_search = browser.find_element(By.ID, "schedule-search")
    fill_search.send_keys("north")
    fill_search.submit()
    wait_for(browser, lambda d: "q=north" in d.current_url)
    assert [r.get_attribute("data-schedule") for r in browser.find_elements(By.CSS_SELECTOR, "#schedules tbody tr")
            ] == ["b-hourly"]

    browser.get(f"{console}/schedules")
    click_action(browser, "pause-all")
    assert "Paused 2 schedule(s)." in text_of(browser, ".flash")
    assert all(s.paused for s in queue.schedules.list())
    click_action(browser, "resume-all")
    assert "Resumed 3 schedule(s)." in text_of(browser, ".flash")
    assert not any(s.paused for s in queue.schedules.list())


def test_a_viewer_sees_no_action(queue: finejobs.Queue, serve_console: Callable[..., Any], browser: WebDriver,
                                 ping: Any) -> None:
    queue.schedules.add("hourly", "ping", Every(hours=1))
    access = finejobs.web.Access.build(users={"vi": ("viewer", finejobs.web.hash_password("viewer-pass"))})
    with serve_console(access=access) as url:
        signed_in = url.replace("http://", "http://vi:viewer-pass@")
        for path in ("/schedules", "/schedules/hourly"):
            browser.get(f"{signed_in}{path}")
            wait_for(browser, lambda d: "hourly" in text_of(d, "main"))
            assert "vi · viewer" in text_of(browser, ".who")
            assert browser.find_elements(By.CSS_SELECTOR, "main form[method=post], main [data-action]") == []
            assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "main button")] == (
                ["Search"] if path == "/schedules" else [])
            for link in ("new-schedule", "edit-schedule", "delete-schedule"):
                assert not browser.find_elements(By.ID, link)
        assert shown_fires(browser) == expected_fires(queue, "hourly")
        browser.get(f"{signed_in}/schedules/new")
        wait_for(browser, lambda d: "operator" in text_of(d, "main"))
        assert not browser.find_elements(By.ID, "schedule-form")


def test_statuses_in_colour_and_run_history_with_errors(queue: finejobs.Queue, clock: FakeClock, console: str,
                                                         browser: WebDriver, tmp_path: Path) -> None:
    """Several schedules with a history (their ticks run by a real scheduler and worker on the FakeClock): the
    list shows each status in its colour, a schedule's page its runs, outcomes and errors."""
    planned: list[int] = []

    @queue.job("dosage.plan", retry=finejobs.Retry(max_attempts=1))
    def plan(payload: dict[str, Any]) -> None:
        planned.append(1)
        if len(planned) == 2:
            raise TimeoutError("pharmacy API did not answer within 30 s")

    @queue.job("lab.sync", retry=finejobs.Retry(max_attempts=1))
    def sync(payload: dict[str, Any]) -> None:
        raise ConnectionError("lab server refused the connection (10.0.3.7:443)")

    for kind in ("renew.policies", "sms.welcome", "sms.sweep", "campaign.start"):
        queue.job(kind)(lambda payload: None)

    clock.set(T0 - timedelta(hours=4))
    queue.schedules.add("dosage-planner", "dosage.plan", Every(hours=1, tz="Africa/Nairobi"),
                        payload={"district": "north"}, description="one alert job per dose due in the next hour")
    queue.schedules.add("lab-results-sync", "lab.sync", Adaptive(timedelta(minutes=5), on_error=timedelta(minutes=25)),
                        description="new lab results, every 5 minutes (25 after an error)")
    queue.schedules.add("welcome-sms", "sms.welcome", Every(minutes=30, start=clock(), count=2))
    queue.schedules.add("renewals-north", "renew.policies", Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"),
                        payload={"region": "north"})
    queue.schedules.add("sms-sweep-paris", "sms.sweep", RRule.weekly("MO,WE,FR", at="09:00", tz="Europe/Paris"),
                        paused=True)
    queue.schedules.add("flu-campaign", "campaign.start", RRule.yearly(
        month=3, weekday="SU", nth=1, at="10:00", tz="Africa/Nairobi", count=5, start=T0))
    worker = queue.worker(listen=False, register=False)
    assert isinstance(worker, Worker) and worker.scheduler is not None
    while clock() < T0:
        worker.scheduler.run_once(clock())
        worker.work_once()
        clock.advance(timedelta(minutes=5))
    worker.scheduler.run_once(clock())  # 08:00: the planner's tick is made, not yet run
    statuses = {s.name: s.status for s in queue.schedules.list()}
    assert statuses == {"dosage-planner": "active", "lab-results-sync": "failed", "welcome-sms": "finished",
                        "renewals-north": "active", "sms-sweep-paris": "paused", "flu-campaign": "active"}

    try:
        browser.set_window_size(1400, 800)
        browser.get(f"{console}/schedules")
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#schedules tbody tr")) == 6)
        colours = {e.text: e.value_of_css_property("background-color")
                   for e in browser.find_elements(By.CSS_SELECTOR, "#schedules .state")}
        assert len(set(colours.values())) == 4, colours  # active, paused, finished, failed: four colours
        browser.save_screenshot(str(tmp_path / "console-schedules.png"))

        browser.get(f"{console}/schedules/lab-results-sync")
        wait_for(browser, lambda d: d.find_elements(By.ID, "schedule-history"))
        history = text_of(browser, "#schedule-history")
        assert "ConnectionError: lab server refused the connection" in history and "error" in history

        browser.set_window_size(1400, 1480)
        browser.get(f"{console}/schedules/dosage-planner")
        wait_for(browser, lambda d: d.find_elements(By.ID, "schedule-history"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#schedule-history tbody tr")
        runs = queue.schedules.runs("dosage-planner", limit=20)
        assert len(rows) == len(runs) == 5
        assert [r.get_attribute("data-job") for r in rows] == [str(r.job_id) for r in runs]
        assert [r.outcome for r in runs] == [None, "success", "success", "timeout", "success"]
        assert "TimeoutError: pharmacy API did not answer" in rows[3].text and "timeout" in rows[3].text
        assert shown_fires(browser) == expected_fires(queue, "dosage-planner")
        assert "EAT" in text_of(browser, "#next-fires")  # each also in the schedule's timezone
        browser.save_screenshot(str(tmp_path / "console-schedule.png"))
    finally:
        browser.set_window_size(1400, 1000)
    if os.environ.get("FINEJOBS_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name in ("console-schedules.png", "console-schedule.png"):
            shutil.copy(tmp_path / name, DOCS_IMG / name)


def test_a_flash_message_is_shown_only_as_signed(queue: finejobs.Queue, console: str, ping: Any) -> None:
    queue.schedules.add("hourly", "ping", Every(hours=1))
    for query in ("done=deleted&arg=everything&sig=0000", "done=deleted&arg=x&sig=%C3%A9t%C3%A9", "done=nope"):
        with urllib.request.urlopen(f"{console}/schedules/hourly?{query}") as page:
            assert page.status == 200
            assert 'class="flash' not in page.read().decode()
