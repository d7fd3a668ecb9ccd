"""Cancelling a Dask run from a signal at a safe point.

An exception raised by a signal handler lands wherever the main thread is, also inside Dask's own
synchronous calls into its event loop, which then fail on their own (tracebacks from the loop). While a
Dask run is active, SIGTERM and SIGINT therefore only set a flag; the client polls it with its futures
(`CancelOnSignal.cancelled`, every 0.2 s) and cancels the work from its own code.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from engine.progress import Progress

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT") if hasattr(signal, name))


class CancelOnSignal:
    """A Progress passing everything to `progress`; `cancelled()` is also True once a signal was received."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.received = threading.Event()

    def started(self, tiles: int) -> None:
        self.progress.started(tiles)

    def advance(self, done: int, total: int) -> None:
        self.progress.advance(done, total)

    def warning(self, text: str) -> None:
        self.progress.warning(text)

    def cancelled(self) -> bool:
        return self.received.is_set() or self.progress.cancelled()


@contextmanager
def signals_cancel(progress: Progress) -> Iterator[CancelOnSignal]:
    """Within the block, SIGTERM and SIGINT set the returned progress's cancel flag instead of raising (main
    thread only; elsewhere the signals stay as they are)."""
    wrapped = CancelOnSignal(progress)
    previous = {}
    try:
        for signum in _SIGNALS:
            previous[signum] = signal.signal(signum, lambda s, f: wrapped.received.set())
    except ValueError:  # not the main thread
        pass
    try:
        yield wrapped
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
