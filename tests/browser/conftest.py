"""Browser tests: Debian's Chromium driven by selenium (chromium and chromium-driver; .ci/run installs them)
against a real console served by uvicorn on 127.0.0.1, on the session's real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

import finejobs
from tests.webserver import serve

CHROMIUM = os.environ.get("FINEJOBS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FINEJOBS_CHROMEDRIVER", "/usr/bin/chromedriver")


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return path
    return None


@pytest.fixture(scope="session")
def _driver() -> Iterator[WebDriver]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing: .ci/run installs chromium and chromium-driver")
        pytest.skip(f"{missing} is missing (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="finejobs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_driver: WebDriver) -> Iterator[WebDriver]:
    """The session's Chromium, with no cookies left from the test before."""
    yield _driver
    _driver.delete_all_cookies()


@pytest.fixture
def console(queue: finejobs.Queue) -> Iterator[str]:
    """The base URL of an open (loopback) console on the test's queue."""
    with serve(queue) as url:
        yield url


@pytest.fixture
def serve_console(queue: finejobs.Queue) -> Callable[..., AbstractContextManager[str]]:
    """``with serve_console(access=...) as url:`` a console on the test's queue with other options."""
    def start(**options: Any) -> AbstractContextManager[str]:
        return serve(queue, **options)
    return start
