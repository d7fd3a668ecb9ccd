"""A bounded background stage: a thread fed or drained through a queue, with errors raised in the caller.

Used by segment_raster to overlap reading + normalising (producer) and post-processing + writing
(consumer) with model compute on the calling thread. Queues are bounded, so memory holds at most
`depth` batches per stage whatever the raster size.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

_END = object()
_POLL_S = 0.1


class Producer:
    """Runs `items` (an iterable doing the work) in a thread; iterate the Producer to get its results."""

    def __init__(self, items: Iterable[Any], depth: int = 2, name: str = "reader") -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterable[Any]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._error = exc
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def close(self) -> None:
        """Stop the thread (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._thread.join(timeout=30)


class Consumer:
    """Calls `handle(item)` in a thread for every `put(item)`, in order; `finish()` waits and re-raises errors."""

    def __init__(self, handle: Callable[[Any], None], depth: int = 2, name: str = "writer") -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._handle = handle
        self._error: BaseException | None = None
        self._discard = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is None and not self._discard.is_set():
                try:
                    self._handle(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the producing thread
                    self._error = exc

    def put(self, item: Any) -> None:
        """Queue `item`; raises the handler's exception if it has failed."""
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every queued item is handled; raise the handler's exception if any."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self, discard: bool = False) -> None:
        """Let the thread end after the queued items (skipped when `discard` or after a failure); wait for it."""
        if discard:
            self._discard.set()
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        self._thread.join()
