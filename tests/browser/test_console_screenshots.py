"""The main pages on an hour of realistic work, in a real browser: each renders, draws its charts, fits the
window; their screenshots go to docs/img/console-*.png when FINEJOBS_SCREENSHOTS=1 (else to a temporary
directory):

    FINEJOBS_SCREENSHOTS=1 .venv/bin/python -m pytest -q tests/browser/test_console_screenshots.py

The hour: four districts (one shard each), dosage alerts through an SMS gateway that times out now and
then, IVR calls to busy lines, a planner and a report; district-3 paused at 07:45 for gateway maintenance
(its alerts wait, some about to expire); two workers alive, one gone; a few operators' actions.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import finejobs
from finejobs import Admin, JobFilter, JobState
from finejobs.testing import FakeClock
from tests.conftest import T0

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SHARDS = ("district-1", "district-2", "district-3", "district-4")
WIDTH, HEIGHT = 1400, 1000
MINUTE = timedelta(minutes=1)


class Gateway:
    """What the handlers talk to: it fails when the payload says so; held IVR calls wait for release."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = 0
        self.lock = threading.Lock()


def declare(queue: finejobs.Queue, gateway: Gateway) -> None:
    retry = finejobs.Retry(max_attempts=3, backoff=timedelta(seconds=30), max_backoff=timedelta(minutes=5))

    @queue.job("dosage.alert", retry=retry, expires_in=timedelta(hours=1), timeout=timedelta(seconds=30))
    def alert(payload: dict[str, Any]) -> None:
        if payload.get("outcome") == "timeout":
            raise TimeoutError("SMS gateway sms-gw.district.local did not answer within 10 s")
        if payload.get("outcome") == "503":
            raise ConnectionError("SMS gateway answered 503 Service Unavailable (queue full, retry later)")

    @queue.job("ivr.call", retry=finejobs.Retry(max_attempts=2, backoff=timedelta(seconds=45)))
    def call(payload: dict[str, Any]) -> None:
        if payload.get("hold"):
            with gateway.lock:
                gateway.holding += 1
            gateway.release.wait(30)
            return
        if payload.get("outcome") == "busy":
            raise RuntimeError(f"IVR line busy (SIP 486) calling patient {payload['patient_id']}")

    @queue.job("dosage.plan")
    def plan(payload: dict[str, Any]) -> None:
        pass

    @queue.job("report.daily", retry=finejobs.Retry(max_attempts=1))
    def report(payload: dict[str, Any]) -> None:
        if payload.get("outcome") == "bad":
            raise ValueError(f"report {payload['district']}: no dose record for ward 7 on 2026-11-21")


def seed(queue: finejobs.Queue, clock: FakeClock, gateway: Gateway) -> None:
    """07:00 to 08:00, minute by minute: enqueue, wait a little (the lag), work, register the workers."""
    rng = random.Random(12)
    queue.store.shard_add(list(SHARDS[:2]))
    ana, cli = Admin(queue, actor="web:ana"), Admin(queue, actor="cli:ops")
    workers = [queue.worker(listen=False, shards=list(SHARDS[:2]), concurrency=500, worker_id="w-north-7f3a"),
               queue.worker(listen=False, shards=list(SHARDS[2:]), concurrency=500, worker_id="w-south-91bc")]
    gone = queue.worker(listen=False, shards=[SHARDS[3]], concurrency=8, worker_id="w-south-old-02d4")
    clock.set(T0 - timedelta(minutes=60))
    for worker in [*workers, gone]:
        worker.started_at = clock()
    patient = 1000
    for minute in range(60):
        start = T0 - timedelta(minutes=60 - minute)
        clock.set(start)
        busy = 1.0 + (1.4 if 28 <= minute <= 36 else 0.0)
        for shard in SHARDS:
            alerts = []
            for _ in range(int(rng.randint(4, 12) * busy)):
                patient += 1
                roll = rng.random()
                outcome = "timeout" if roll < 0.07 else "503" if roll < 0.10 else "ok"
                alerts.append({"patient_id": patient, "dose": f"{8 + minute // 20:02d}:00", "outcome": outcome})
            queue.enqueue_many("dosage.alert", alerts, shard=shard)
            calls = [{"patient_id": patient - i, "outcome": "busy" if rng.random() < 0.2 else "ok"}
                     for i in range(rng.randint(0, 3))]
            queue.enqueue_many("ivr.call", calls, shard=shard)
        if minute % 15 == 0:
            queue.enqueue("dosage.plan", {"hour": f"{7 + minute // 60:02d}:00"}, shard=SHARDS[0])
        if minute == 20:
            for i, shard in enumerate(SHARDS):
                queue.enqueue("report.daily", {"district": shard, "outcome": "bad" if i == 2 else "ok"}, shard=shard)
        if minute == 25:
            cli.retry_matching(JobFilter(kind="report.daily", state="failed"))
        if minute == 45:
            ana.pause(shard="district-3", reason="SMS gateway maintenance in district 3 until 08:30")
        if minute == 50:
            ana.retry(ana.jobs(JobFilter(kind="dosage.alert", state="failed", shard="district-1"), limit=1).jobs[0].id)
        clock.set(start + timedelta(seconds=rng.randint(1, 6) + (40 if 30 <= minute <= 34 else 0)))
        for worker in workers:
            worker.work_once()
            assert worker.registry is not None
            worker.registry.run_once(clock())
        if minute < 20:
            assert gone.registry is not None
            gone.registry.run_once(clock())
    clock.set(T0)
    ana.cancel_matching(JobFilter(kind="ivr.call", shard="district-3", state="available"))
    alerts = queue.kind("dosage.alert")
    alerts.enqueue_many([{"patient_id": 9000 + i, "dose": "08:00", "outcome": "ok"} for i in range(14)],
                        shard="district-3", expires_at=T0 + timedelta(minutes=11))
    for shard in SHARDS:
        alerts.enqueue_many([{"patient_id": 7000 + i, "dose": "09:00", "outcome": "ok"} for i in range(25)],
                            shard=shard, run_at=T0 + timedelta(minutes=55))
    queue.enqueue_many("ivr.call", [{"patient_id": 8100 + i, "hold": True} for i in range(3)], shard="district-2")
    for worker in workers:
        assert worker.registry is not None
        worker.registry.run_once(clock())


@pytest.fixture
def hour(queue: finejobs.Queue, clock: FakeClock) -> Iterator[Gateway]:
    gateway = Gateway()
    declare(queue, gateway)
    seed(queue, clock, gateway)
    with queue.worker(shards=["district-2"], concurrency=4, poll_interval=0.05, worker_id="w-north-ivr-5e21",
                      run_scheduler=False) as worker:
        WebDriverWait(None, 15, poll_frequency=0.05).until(lambda _: gateway.holding == 3)  # type: ignore[arg-type]
        assert worker.registry is not None
        worker.registry.run_once(clock())
        try:
            yield gateway
        finally:
            gateway.release.set()


def out_dir(tmp_path: Path) -> Path:
    if os.environ.get("FINEJOBS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG
    return tmp_path


def shoot(browser: WebDriver, address: str, ready: str, path: Path, *, max_height: int = 2200,
          then: tuple[str, str] | None = None) -> None:
    """Open the page, wait for ``ready`` (click ``then[0]`` and wait for ``then[1]``), check it fits the
    window's width, save the whole page."""
    browser.set_window_size(WIDTH, HEIGHT)
    browser.get(address)
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    if then is not None:
        browser.find_element(By.CSS_SELECTOR, then[0]).click()
        WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: d.find_elements(By.CSS_SELECTOR, then[1]))
    width, height = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    inner = browser.execute_script("return window.innerWidth")
    browser.set_window_size(WIDTH, min(max(height + 140, 700), max_height))
    browser.save_screenshot(str(path))
    browser.set_window_size(WIDTH, HEIGHT)
    assert width <= inner, f"{address} is wider than the window ({width} > {inner} px)"
    assert path.stat().st_size > 10_000


def test_the_main_pages_on_an_hour_of_work(browser: WebDriver, console: str, hour: Gateway, queue: finejobs.Queue,
                                           tmp_path: Path) -> None:
    out = out_dir(tmp_path)
    stats = Admin(queue).stats(fresh=True)
    assert stats.by_state["running"] == 3 and stats.by_state["failed"] > 0 and stats.expiring_soon["district-3"] >= 14
    failed = Admin(queue).jobs(JobFilter(kind="dosage.alert", state="failed"), limit=1).jobs[0]

    shoot(browser, f"{console}/", "#chart-throughput svg g.bar", out / "console-overview.png")
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-throughput svg g.bar")
    assert len(bars) >= 55, "a bar for (nearly) every minute of the hour"
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-lag svg polyline")
    assert "SMS gateway maintenance" in browser.find_element(By.ID, "paused").text
    shoot(browser, f"{console}/jobs?kind=dosage.alert&state=failed&error=gateway&limit=25", "#jobs-table tr[data-job]",
          out / "console-jobs.png", then=("#bulk-review", "#bulk-count"))
    assert browser.find_element(By.ID, "bulk-count").text == f"{stats.by_kind['dosage.alert']['failed']}"
    shoot(browser, f"{console}/jobs/{failed.id}", "#job-attempts", out / "console-job.png")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#job-attempts article")) == 3
    shoot(browser, f"{console}/shards", "#shards-table", out / "console-shards.png")
    assert "paused" in browser.find_element(By.CSS_SELECTOR, 'tr[data-shard="district-3"]').text
    shoot(browser, f"{console}/workers", "#workers-table", out / "console-workers.png")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#workers-table tr.alive")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "#workers-table tr.gone")) == 1
    shoot(browser, f"{console}/audit", "#audit-table", out / "console-audit.png", max_height=1000)
    assert queue.get(failed.id).state is JobState.FAILED
