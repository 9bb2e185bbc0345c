"""finejobs.runtime.handler_pool: the threads of a worker's sync handlers (no database)."""

from __future__ import annotations

import threading
import time

from finejobs.runtime.handler_pool import HandlerPool


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


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
