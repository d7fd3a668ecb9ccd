"""Status lines for a run, pure Python: engine events -> percent and "Tile 37/121 · about 2 min left",
the device in words, the result summary kept in the dock, and long words made wrappable for narrow labels."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LOADING = "Loading model…"
MIN_ETA_SECONDS = 3.0  # no estimate before this much tile time has passed


def about_left(seconds: float) -> str:
    """"about 40 s left", "about 2 min left", "about 1 h 5 min left"."""
    seconds = max(0.0, seconds)
    if seconds < 55:
        return f"about {max(5, int(round(seconds / 5.0)) * 5)} s left"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


def device_text(device: str, gpu_names: Mapping[str, str] | None = None) -> str:
    """"CPU", or "GPU cuda:0 (NVIDIA H200)" with the name the engine check reported for that device."""
    if not device or device == "cpu":
        return "CPU"
    name = (gpu_names or {}).get(device) or (gpu_names or {}).get(f"{device}:0" if ":" not in device else "")
    return f"GPU {device}" + (f" ({name})" if name else "")


class ProgressTracker:
    """Follows one engine run's events; `status` is the line to show, `percent` 0-100."""

    def __init__(self, unit: str = "Tile", first: str = LOADING) -> None:
        """`unit`: what the engine counts ("Tile", "Chip", "Iteration"); `first`: the status before its start."""
        self.unit = unit
        self.status = first
        self.percent = 0.0
        self._tiles_started_at: float | None = None

    def update(self, event: Mapping, now: float) -> bool:
        """Take one JSONL event seen at time `now` (seconds, monotonic); True when status or percent changed."""
        kind = event.get("event")
        before = (self.status, self.percent)
        if kind == "start":
            self._tiles_started_at = now
            tiles = event.get("tiles")
            self.status = f"{self.unit} 0/{tiles}" if isinstance(tiles, int) else "Working…"
        elif kind == "progress":
            done, total = event.get("done"), event.get("total")
            self.percent = float(event.get("percent", self.percent))
            if isinstance(done, int) and isinstance(total, int) and total > 0:
                self.status = f"{self.unit} {done}/{total}"
                if self._tiles_started_at is None:
                    self._tiles_started_at = now
                elapsed = now - self._tiles_started_at
                if 0 < done < total and elapsed >= MIN_ETA_SECONDS:
                    self.status += " · " + about_left(elapsed / done * (total - done))
        elif kind == "done":
            self.percent = 100.0
            self.status = "Loading the result…"
        return (self.status, self.percent) != before


@dataclass(frozen=True)
class ResultSummary:
    """What a finished run found: objects per class (most first), score range, run time in seconds."""

    features: int
    class_counts: tuple[tuple[str, int], ...] = ()
    score_range: tuple[float, float] | None = None
    seconds: float | None = None

    @classmethod
    def from_values(cls, classes: Iterable[str], scores: Iterable[float], seconds: float | None = None
                    ) -> ResultSummary:
        counts: dict[str, int] = {}
        for name in classes:
            counts[str(name)] = counts.get(str(name), 0) + 1
        values = [float(s) for s in scores if s is not None]
        ranked = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return cls(sum(counts.values()), ranked, (min(values), max(values)) if values else None, seconds)

    def text(self) -> str:
        """E.g. "42 objects: 40 ship, 2 tank\\nscores 0.51-0.98 · 9.5 s"."""
        if self.features == 0:
            head = "No objects found"
        else:
            head = f"{self.features} object{'s' if self.features != 1 else ''}: " + \
                ", ".join(f"{n} {name}" for name, n in self.class_counts)
        tail = []
        if self.score_range is not None:
            low, high = self.score_range
            tail.append(f"scores {low:.2f}–{high:.2f}")
        if self.seconds is not None:
            tail.append(f"{self.seconds:.0f} s" if self.seconds >= 10 else f"{self.seconds:.1f} s")
        return head + ("\n" + " · ".join(tail) if tail else "")


_BREAK_AFTER = re.compile(r"([/\\_\-.,:;=])")
_ZWSP = "\u200b"  # zero-width space: a place where a label may wrap a long word


def wrappable(text: str, longest: int = 18) -> str:
    """`text` with zero-width spaces in words longer than `longest` characters (paths, file names), so a
    word-wrapped label can break them instead of growing wider than the dock."""
    def split(word: str) -> str:
        if len(word) <= longest:
            return word
        word = _BREAK_AFTER.sub(r"\1" + _ZWSP, word)
        return _ZWSP.join(_chunks(part, longest) for part in word.split(_ZWSP))

    return re.sub(r"\S+", lambda m: split(m.group(0)), text)


def _chunks(word: str, size: int) -> str:
    return _ZWSP.join(word[i:i + size] for i in range(0, len(word), size))
