"""Progress of a long run: the `Progress` interface the engine reports to, a silent default, and the CLI's
`Reporter` (a tqdm bar on stderr, or JSON lines on stdout with --progress jsonl).

JSON-lines protocol (one object per line on stdout, flushed):
  {"event": "start", ..., "tiles": n}  {"event": "progress", "done": k, "total": n, "percent": p}
  {"event": "warning", "message": str}  {"event": "done", ...}  {"event": "error", "message": str}
Warnings may come before "start" (a work folder left by a killed run, removed). The "error" event is
written by engine.cli.main for every failure, argument errors included, as the last line.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Protocol

from tqdm import tqdm


class Progress(Protocol):
    """What a long run reports to, and asks whether to stop. Called from the run's worker threads too."""

    def started(self, tiles: int) -> None:
        """The inputs are checked and `tiles` units of work follow."""

    def advance(self, done: int, total: int) -> None:
        """`done` of `total` units are finished."""

    def warning(self, text: str) -> None:
        """Something the user should know (one line); the run goes on."""

    def cancelled(self) -> bool:
        """True to stop the run (it raises engine.errors.Cancelled and leaves no partial output)."""


class NoProgress:
    """Reports nothing and never cancels (the default)."""

    def started(self, tiles: int) -> None:
        pass

    def advance(self, done: int, total: int) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False


class Reporter:
    """A Progress for the CLI. mode: "bar" (tqdm on stderr), "jsonl" (events on stdout) or "none".

    `start_fields` go into the start event with the tile count (raster, model, output, ...). Cancel comes
    from SIGTERM (engine.cli), so `cancelled()` is False.
    """

    def __init__(self, mode: str = "bar", desc: str = "", unit: str = "tile") -> None:
        self.mode, self.desc, self.unit = mode, desc, unit
        self.start_fields: dict[str, Any] = {}
        self._bar: tqdm | None = None

    def _emit(self, event: str, **fields: Any) -> None:
        if self.mode == "jsonl":
            sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
            sys.stdout.flush()

    def started(self, tiles: int) -> None:
        self._emit("start", **self.start_fields, tiles=tiles)

    def advance(self, done: int, total: int) -> None:
        if self.mode == "bar":
            if self._bar is None:
                self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
        self._emit("progress", done=done, total=total, percent=round(100.0 * done / max(1, total), 1))

    def warning(self, text: str) -> None:
        if self.mode == "jsonl":
            self._emit("warning", message=text)
        else:
            print(f"warning: {text}", file=sys.stderr)

    def cancelled(self) -> bool:
        return False

    def done(self, **fields: Any) -> None:
        self.close()
        self._emit("done", **fields)

    def error(self, message: str) -> None:
        self.close()
        self._emit("error", message=message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
