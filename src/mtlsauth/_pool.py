"""``BoundedPool``: the threads that run uncached verifications for the async adapters.

Threads start on demand, up to ``threads``, and end as soon as the queue is empty: an idle
middleware holds no thread, and a forked worker process (whose parent's threads did not
survive the fork) starts afresh. At most ``threads + queue`` jobs are in flight (queued or
running); one more is refused at once (``submit`` returns ``None``), never queued.

A job leaves the count only when it leaves the pool: a worker finished or discarded it, or
its future was cancelled while it still waited in the queue, which removes it from the queue
at once (O(1): the queue is an ``OrderedDict`` keyed by the future). A cancelled request
therefore never leaves an uncounted entry behind, however long the threads hang.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["BoundedPool"]


class BoundedPool:
    __slots__ = ("_inflight", "_lock", "_max_inflight", "_pid", "_queue", "_running", "_threads")

    def __init__(self, threads: int, queue: int) -> None:
        self._threads = threads
        self._max_inflight = threads + queue
        self._inflight = 0  # queued or running: len(self._queue) + jobs in the workers' hands
        self._running = 0  # pool threads alive
        self._lock = threading.Lock()
        self._queue: OrderedDict[Future[Any], Callable[[], Any]] = OrderedDict()
        self._pid = os.getpid()

    def submit(self, job: Callable[[], Any]) -> Future[Any] | None:
        """Queue ``job``; its future, or ``None`` when the pool is full."""
        future: Future[Any] = Future()
        future.add_done_callback(self._dequeue_cancelled)  # pending: never runs here
        start = False
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue.clear()
                self._inflight = self._running = 0
            if self._inflight >= self._max_inflight:
                return None
            self._inflight += 1
            self._queue[future] = job
            if self._running < self._threads:
                self._running += 1
                start = True
        if start:
            try:
                threading.Thread(target=self._work, name="mtlsauth-verify", daemon=True).start()
            except RuntimeError:  # no thread can start (interpreter shutting down)
                with self._lock:
                    self._running -= 1
                    mine = self._queue.pop(future, None) is not None
                    if mine:
                        self._inflight -= 1
                if not mine:  # a live worker already took it and answers it
                    return future
                future.cancel()
                return None
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running -= 1
                    return
                future, job = self._queue.popitem(last=False)
            if not future.set_running_or_notify_cancel():  # its request went away
                self._done()
                continue
            try:
                result = job()
            except BaseException as exc:  # noqa: BLE001 - the waiting request must wake
                self._done()
                future.set_exception(exc)
            else:
                # Counted out before the answer wakes its request, which may submit again.
                self._done()
                future.set_result(result)

    def _done(self) -> None:
        with self._lock:
            self._inflight -= 1

    def _dequeue_cancelled(self, future: Future[Any]) -> None:
        """A future cancelled while queued leaves the queue, and the count, at once."""
        if not future.cancelled():
            return  # answered by a worker, which counted it out
        with self._lock:
            if self._queue.pop(future, None) is not None:
                self._inflight -= 1
            # else: a worker popped it already and counts it out when it sees the cancel

    @property
    def waiting(self) -> int:
        """Jobs running or queued right now."""
        return self._inflight
