"""Dynamic batching: concurrent requests' records share the model's batches.

Request handlers :meth:`Batcher.submit` records and await one future per record. One worker
thread owns the model (and the tokenizer, which is not safe to share between threads): it
blocks for the first queued record, then takes more until ``max_batch_size`` records or
``max_wait_s`` after the first, and runs them as one call of ``run_batch``. Control work
(reloading the prompt table) goes through the same queue, so it never races a batch.

A batch that raises is split in halves and each half run again, down to single records, so
only the record(s) that made it fail get the error: one client's bad record never fails
another client's request (a request cancelled meanwhile is not decoded at all).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_STOP = object()


class _Control:
    """A function the worker runs between batches (e.g. a reload)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn, self.future = fn, Future()


class Batcher:
    """``run_batch(items) -> results`` (one result, or an Exception instance, per item) on a
    worker thread, items of concurrent submitters batched together."""

    def __init__(self, run_batch: Callable[[list], list], max_batch_size: int, max_wait_s: float,
                 on_batch: Callable[[int], None] | None = None, on_failure: Callable[[], None] | None = None):
        self.run_batch, self.max_batch_size, self.max_wait_s = run_batch, max_batch_size, max_wait_s
        self.on_batch, self.on_failure = on_batch, on_failure  # metrics: records per batch, isolated failures
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ptune-model-worker", daemon=True)
        self.batches = 0  # batches run (for /health and tests)
        self.largest = 0  # most items in one batch

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def depth(self) -> int:
        """Records (and control jobs) waiting for the worker."""
        return self._queue.qsize()

    def submit(self, items: list) -> list[Future]:
        futures = [Future() for _ in items]
        for item, fut in zip(items, futures, strict=True):
            self._queue.put((item, fut))
        return futures

    def control(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the worker between batches; its future has the result."""
        c = _Control(fn)
        self._queue.put(c)
        return c.future

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if isinstance(first, _Control):
                self._run_control(first)
                continue
            batch, pending = [first], None
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is _STOP or isinstance(nxt, _Control):
                    pending = nxt  # after this batch, in order
                    break
                batch.append(nxt)
            self._run(batch)
            if pending is _STOP:
                return
            if pending is not None:
                self._run_control(pending)

    def _run(self, batch: list) -> None:
        # a request cancelled while queued (shutdown, client gone) is not decoded
        batch = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
        if not batch:
            return
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        if self.on_batch is not None:
            self.on_batch(len(batch))
        results = self._isolated([item for item, _ in batch])
        for (_, fut), res in zip(batch, results, strict=True):
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    def _isolated(self, items: list) -> list:
        """``run_batch(items)``; if it raises, each half on its own (bisection): the failing
        record(s) get the exception, every other record its result."""
        try:
            return self.run_batch(items)
        except Exception as e:  # noqa: BLE001 - the worker must survive any batch
            if len(items) == 1:
                print(f"ptune serve: a record failed in the model ({type(e).__name__}: {e}); "
                      "its request gets 500, the others in its batch their answers", file=sys.stderr, flush=True)
                if self.on_failure is not None:
                    self.on_failure()
                return [e]
            half = len(items) // 2
            return self._isolated(items[:half]) + self._isolated(items[half:])

    @staticmethod
    def _run_control(c: _Control) -> None:
        try:
            c.future.set_result(c.fn())
        except Exception as e:  # noqa: BLE001
            c.future.set_exception(e)
