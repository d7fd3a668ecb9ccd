"""Progress reporting for the CLI: a tqdm bar on stderr, or JSON lines on stdout (--progress jsonl).

JSON-lines protocol (one object per line on stdout, flushed):
  {"event": "start", ...}  {"event": "progress", "done": k, "total": n, "percent": p}
  {"event": "warning", "message": str}  {"event": "done", ...}  {"event": "error", "message": str}
"""
from __future__ import annotations

import json
import sys
from typing import Any

from tqdm import tqdm


class Reporter:
    """mode: "bar" (tqdm on stderr), "jsonl" (events on stdout) or "none"."""

    def __init__(self, mode: str = "bar", desc: str = "") -> None:
        self.mode, self.desc = mode, desc
        self._bar: tqdm | None = None

    def _emit(self, event: str, **fields: Any) -> None:
        if self.mode == "jsonl":
            sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
            sys.stdout.flush()

    def start(self, **fields: Any) -> None:
        self._emit("start", **fields)

    def progress(self, done: int, total: int) -> None:
        if self.mode == "bar":
            if self._bar is None:
                self._bar = tqdm(total=total, desc=self.desc, unit="tile", file=sys.stderr, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
        self._emit("progress", done=done, total=total, percent=round(100.0 * done / max(1, total), 1))

    def warning(self, message: str) -> None:
        if self.mode == "jsonl":
            self._emit("warning", message=message)
        else:
            print(f"warning: {message}", file=sys.stderr)

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
