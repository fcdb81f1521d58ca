"""``BoundedPool``: the threads that run uncached verifications for the async adapters.

Threads start on demand, up to ``threads``, and end as soon as the queue is empty: an idle
middleware holds no thread, and a forked worker process (whose parent's threads did not
survive the fork) starts afresh. At most ``threads + queue`` jobs are in flight; one more is
refused at once (``submit`` returns ``None``), never queued.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["BoundedPool"]


class BoundedPool:
    __slots__ = ("_inflight", "_lock", "_max_inflight", "_pid", "_queue", "_running", "_threads")

    def __init__(self, threads: int, queue: int) -> None:
        self._threads = threads
        self._max_inflight = threads + queue
        self._inflight = 0  # queued or running
        self._running = 0  # pool threads alive
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._pid = os.getpid()

    def submit(self, job: Callable[[], Any]) -> Future[Any] | None:
        """Queue ``job``; its future, or ``None`` when the pool is full."""
        future: Future[Any] = Future()
        start = False
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue.clear()
                self._inflight = self._running = 0
            if self._inflight >= self._max_inflight:
                return None
            self._inflight += 1
            self._queue.append((future, job))
            if self._running < self._threads:
                self._running += 1
                start = True
        future.add_done_callback(self._release)
        if start:
            try:
                threading.Thread(target=self._work, name="mtlsauth-verify", daemon=True).start()
            except RuntimeError:  # no thread can start (interpreter shutting down)
                with self._lock:
                    self._running -= 1
                future.cancel()
                return None
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running -= 1
                    return
                future, job = self._queue.popleft()
            if future.set_running_or_notify_cancel():  # False: its request went away
                future.set_result(job())

    def _release(self, _future: object) -> None:
        with self._lock:
            self._inflight -= 1

    @property
    def waiting(self) -> int:
        """Jobs running or queued right now."""
        return self._inflight
