"""A Progress (engine.progress) for tests: records what a run reports and cancels on a condition."""
from __future__ import annotations

from collections.abc import Callable

from engine.progress import NoProgress


class RecordingProgress(NoProgress):
    """Records started/advance/warning calls; `cancelled()` counts its polls and returns `cancel_when(self)`."""

    def __init__(self, cancel_when: Callable[[RecordingProgress], bool] | None = None) -> None:
        self.tiles: int | None = None
        self.advances: list[tuple[int, int]] = []
        self.warnings: list[str] = []
        self.polls = 0
        self.cancel_when = cancel_when

    def started(self, tiles: int) -> None:
        self.tiles = tiles

    def advance(self, done: int, total: int) -> None:
        self.advances.append((done, total))

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def cancelled(self) -> bool:
        self.polls += 1
        return bool(self.cancel_when and self.cancel_when(self))
