"""Run a slow call (an engine subprocess) off the UI thread and get its result back on the UI thread."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal


class _Call(QObject):
    """Lives on the UI thread; `finished` emitted from the worker thread is queued to it."""

    finished = pyqtSignal(object)


_RUNNING: set[_Call] = set()  # keeps each call alive until its result is delivered


def run_in_background(work: Callable[[], Any], on_done: Callable[[Any], None], owner: QObject | None = None) -> None:
    """Call `work()` in a worker thread, then `on_done(result)` on the UI thread; an exception raised by
    `work` is passed as the result. Nothing is delivered once `owner` (e.g. the dock) has been deleted."""
    call = _Call()
    _RUNNING.add(call)

    def deliver(result: Any) -> None:
        _RUNNING.discard(call)
        call.deleteLater()
        if owner is None or not sip.isdeleted(owner):
            on_done(result)

    call.finished.connect(deliver)

    def run() -> None:
        try:
            result = work()
        except Exception as exc:  # delivered to on_done, which reports it
            result = exc
        call.finished.emit(result)

    threading.Thread(target=run, name="rsseg-background", daemon=True).start()


def busy() -> bool:
    """True while a background call has not delivered its result."""
    return bool(_RUNNING)


def wait_idle(timeout: float = 60.0) -> bool:
    """Process events until every background call has delivered (tests, shutdown); False on timeout."""
    deadline = time.monotonic() + timeout
    while _RUNNING and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    return not _RUNNING
