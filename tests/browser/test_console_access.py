"""Roles in a real browser: a viewer sees every page and no action (no button, no posting form) anywhere;
an operator on the same console sees them (so the check is not vacuous)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import finejobs
from finejobs import Admin
from finejobs.web import Access, hash_password

VIEWER = ("vi", "viewer-pass-1")
OPERATOR = ("op", "operator-pass-1")


@pytest.fixture(scope="module")
def access() -> Access:
    return Access.build(users={VIEWER[0]: ("viewer", hash_password(VIEWER[1])),
                               OPERATOR[0]: ("operator", hash_password(OPERATOR[1]))})


@pytest.fixture
def seeded(queue: finejobs.Queue) -> dict[str, int]:
    @queue.job("dosage.alert", retry=finejobs.Retry(max_attempts=1))
    def alert(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise TimeoutError("gateway timed out")

    failed = queue.enqueue("dosage.alert", {"fail": True}, shard="district-1")
    queue.worker(listen=False).work_once()
    waiting = queue.enqueue("dosage.alert", {}, shard="district-2")
    Admin(queue).pause(shard="district-3")
    return {"failed": failed.id, "waiting": waiting.id}


@pytest.fixture
def url(serve_console: Callable[..., AbstractContextManager[str]], access: Access) -> Iterator[str]:
    with serve_console(access=access) as base:
        yield base


def as_user(base: str, user: tuple[str, str]) -> str:
    return base.replace("http://", f"http://{user[0]}:{user[1]}@")


def pages(ids: dict[str, int]) -> list[str]:
    return ["/", f"/jobs/{ids['failed']}", f"/jobs/{ids['waiting']}", "/jobs?kind=dosage.alert",
            "/jobs?state=failed", "/shards", "/workers", "/audit"]


def actions_on(browser: WebDriver) -> list[str]:
    """Every action the page offers: forms that post, buttons outside the GET filter form, action links."""
    found = [f"form {f.get_attribute('action')}" for f in browser.find_elements(By.CSS_SELECTOR, "form")
             if (f.get_attribute("method") or "get").lower() != "get"]
    found += [f"button {b.text}" for b in browser.find_elements(By.CSS_SELECTOR, "button")
              if not b.find_elements(By.XPATH, "ancestor::form[@id='filters']")]
    found += [f"htmx {e.tag_name}" for e in browser.find_elements(By.CSS_SELECTOR, "[hx-post], [hx-delete]")]
    found += [f"panel {e.get_attribute('id')}" for e in browser.find_elements(By.CSS_SELECTOR, "#bulk, #pause-form")]
    return found


def open_page(browser: WebDriver, address: str) -> None:
    browser.get(address)
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"))


def test_a_viewer_sees_every_page_and_no_action(browser: WebDriver, url: str, seeded: dict[str, int]) -> None:
    base = as_user(url, VIEWER)
    for path in pages(seeded):
        open_page(browser, base + path)
        assert browser.find_element(By.CSS_SELECTOR, ".who").text == "vi · viewer"
        assert "Forbidden" not in browser.title and "Credentials" not in browser.title, path
        assert actions_on(browser) == [], f"{path} offers a viewer actions"


def test_an_operator_sees_the_actions_on_the_same_pages(browser: WebDriver, url: str,
                                                        seeded: dict[str, int]) -> None:
    base = as_user(url, OPERATOR)
    open_page(browser, f"{base}/jobs/{seeded['failed']}")
    assert "form" in " ".join(actions_on(browser)) and browser.find_elements(By.ID, "job-retry")
    open_page(browser, f"{base}/jobs/{seeded['waiting']}")
    assert browser.find_elements(By.ID, "job-cancel")
    open_page(browser, f"{base}/jobs?kind=dosage.alert")
    assert browser.find_elements(By.ID, "bulk-review")
    open_page(browser, f"{base}/shards")
    assert browser.find_elements(By.CSS_SELECTOR, 'button[data-action="pause"]')
    assert browser.find_elements(By.CSS_SELECTOR, 'button[data-action="resume"]')
