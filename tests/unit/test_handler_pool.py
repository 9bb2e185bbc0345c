"""finejobs.runtime.handler_pool: the threads of a worker's sync handlers (no database)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from finejobs.runtime.handler_pool import HandlerPool


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def _shut_down_every_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every pool a test makes is shut down after it, passed or failed: its threads are not daemon threads, and
    idle ones left behind would keep the test process from exiting."""
    made: list[HandlerPool[Any]] = []
    init = HandlerPool.__init__

    def tracked(self: HandlerPool[Any], size: int, handle: Callable[[Any], object], *, name: str) -> None:
        init(self, size, handle, name=name)
        made.append(self)

    monkeypatch.setattr(HandlerPool, "__init__", tracked)
    yield
    for pool in made:
        pool.shutdown()


def test_every_item_runs_once_on_at_most_size_threads() -> None:
    seen: list[int] = []
    lock = threading.Lock()
    threads: set[str] = set()

    def handle(item: int) -> None:
        with lock:
            seen.append(item)
            threads.add(threading.current_thread().name)

    pool: HandlerPool[int] = HandlerPool(4, handle, name="finejobs-test")
    for i in range(2_000):
        pool.submit(i)
    wait_until(lambda: len(seen) == 2_000)
    assert sorted(seen) == list(range(2_000))
    assert 1 <= pool.threads() <= 4 and len(threads) <= 4
    assert all(name.startswith("finejobs-test_") for name in threads)
    assert pool.shutdown() == []


def test_a_slow_item_does_not_hold_up_the_others() -> None:
    release = threading.Event()
    done: list[str] = []

    def handle(item: str) -> None:
        if item == "slow":
            release.wait(5)
        done.append(item)

    pool: HandlerPool[str] = HandlerPool(2, handle, name="finejobs-test")
    pool.submit("slow")
    for i in range(50):
        pool.submit(f"quick-{i}")
    wait_until(lambda: len(done) == 50)  # the second thread ran them all while the first waited
    assert "slow" not in done
    release.set()
    wait_until(lambda: len(done) == 51)
    pool.shutdown()


def test_shutdown_returns_the_items_never_started_and_the_threads_end() -> None:
    started = threading.Event()
    release = threading.Event()

    def handle(item: int) -> None:
        started.set()
        release.wait(5)

    pool: HandlerPool[int] = HandlerPool(1, handle, name="finejobs-test-stop")
    for i in range(5):
        pool.submit(i)
    started.wait(5)
    assert pool.shutdown() == [1, 2, 3, 4]  # 0 is running: it finishes, the rest never start
    release.set()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("finejobs-test-stop")])
    try:
        pool.submit(9)
    except RuntimeError as exc:
        assert "shut down" in str(exc)
    else:
        raise AssertionError("a shut-down pool took an item")


def test_idle_threads_are_reused_and_woken_only_as_needed() -> None:
    ran = threading.Semaphore(0)
    pool: HandlerPool[int] = HandlerPool(50, lambda item: ran.release(), name="finejobs-test")
    for _ in range(20):  # one item at a time: the one idle thread takes each, no new thread starts
        pool.submit(0)
        assert ran.acquire(timeout=5)
        wait_until(lambda: pool._idle == pool.threads())
    assert pool.threads() == 1
    pool.shutdown()


def test_a_burst_of_slow_items_runs_on_as_many_threads_at_once() -> None:
    """The submitter wakes one idle thread and each woken thread the next: all 20 items of a burst still run at
    once on the 20 idle threads (each item waits at a barrier that opens only when all 20 are there)."""
    barriers = [threading.Barrier(20, timeout=5) for _ in range(2)]
    passed: list[int] = []

    def handle(item: int) -> None:
        barriers[item // 100].wait()
        passed.append(item)

    pool: HandlerPool[int] = HandlerPool(20, handle, name="finejobs-test")
    for i in range(20):  # the first burst starts the 20 threads
        pool.submit(i)
    wait_until(lambda: len(passed) == 20 and pool._idle == 20)
    for i in range(100, 120):  # the second meets 20 idle threads: woken one by one, a chain
        pool.submit(i)
    wait_until(lambda: len(passed) == 40)
    assert not any(b.broken for b in barriers) and pool.threads() == 20
    pool.shutdown()
