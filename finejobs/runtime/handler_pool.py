"""The threads that run a worker's sync handlers.

A deque and a condition rather than ``concurrent.futures.ThreadPoolExecutor``: no Future, work item and
semaphore per job, and a thread that finishes a handler takes the next waiting job without being woken for
it. The submitter wakes at most one idle thread; a thread that takes a job and sees more waiting wakes the
next, so the wake-ups of a burst are spread over the handler threads instead of costing the producer one each,
and a burst of quick jobs is run by the threads already awake. Measured on 2 cores, 50 threads, 50,000 no-op
calls handed over in rounds of 50: 2.5 us of CPU per job against 9.8 us for the executor (350k against 87k
calls/s).

Threads start on demand, up to ``size``, and stay until ``shutdown``; like the executor's, they are not
daemon threads (``finejobs worker`` exits past a handler that outlived its grace: see cli.worker).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class HandlerPool(Generic[T]):
    """Runs ``handle(item)`` for each submitted item on at most ``size`` threads; ``handle`` must not raise
    (the worker's ``_execute`` settles every error itself)."""

    def __init__(self, size: int, handle: Callable[[T], object], *, name: str) -> None:
        self._size = size
        self._handle = handle
        self._name = name
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for an item
        self._waking = 0  # ... of which told to wake and not yet awake
        self._closed = False

    def submit(self, item: T) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the handler pool is shut down")
            self._items.append(item)
            if self._idle > self._waking:
                if not self._waking:  # a thread waking now wakes the next if more is waiting (see _run)
                    self._waking += 1
                    self._cond.notify()
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._run, name=f"{self._name}_{len(self._threads)}")
                self._threads.append(thread)
                thread.start()

    def shutdown(self) -> list[T]:
        """Stop taking items; idle threads end, busy ones after their handler. Returns the items never started."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
        return left

    def threads(self) -> int:
        with self._cond:
            return len(self._threads)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._items:
                    if self._closed:
                        return
                    self._idle += 1
                    cond.wait()
                    self._idle -= 1
                    if self._waking:
                        self._waking -= 1
                item = self._items.popleft()
                if self._items and self._idle > self._waking:  # more waiting: hand the wake-up on
                    self._waking += 1
                    cond.notify()
            self._handle(item)
