"""Run the engine CLI as a subprocess: stream its JSON-lines progress, collect its log, cancel cleanly.

Pure Python (no QGIS, no torch): the dock's QgsTask and the Processing algorithm both call `run_engine`.
Log lines carry a level ("info" or "warning"). The engine's error is reported once, as `outcome.error`:
neither its "error" event nor its "error:" stderr line goes to the log.
"""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rs_qgis_plugin.progress import device_text

INFO, WARNING = "info", "warning"
LogCallback = Callable[[str, str], None]  # (line, level)


@dataclass
class EngineOutcome:
    """How an engine run ended. `done` is the engine's final "done" event (output, features, ...)."""

    returncode: int | None
    cancelled: bool = False
    done: dict | None = None
    error: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled and self.done is not None


def engine_process_env(engine_root: str | os.PathLike | None) -> dict[str, str]:
    """The environment for the engine process: the engine importable, nothing of QGIS's Python leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    if engine_root:
        env["PYTHONPATH"] = str(engine_root)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def _pump(stream, tag: str, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put((tag, line.rstrip("\r\n")))
    lines.put((tag, None))


_MISSING = re.compile(r"^(?:ModuleNotFoundError|ImportError): (?:No module named '([\w.]+)'|(.*))")


def _reason(outcome: EngineOutcome, stderr_tail: list[str]) -> str:
    """The engine's one-line reason: its error event, else its `error:` line, else the last stderr line; a
    package the interpreter lacks is named with the way to set the engine up (never a raw traceback)."""
    for line in reversed(stderr_tail):
        missing = _MISSING.match(line.strip())
        if missing:
            what = f"the package '{missing.group(1).split('.')[0]}'" if missing.group(1) else missing.group(2)
            return (f"the engine interpreter lacks {what}: set the engine up with 'Set up engine…' (the dock's "
                    "Engine group), or install its requirements.txt into that Python")
    for line in reversed(stderr_tail):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    if stderr_tail:
        return f"engine exited with code {outcome.returncode}: {stderr_tail[-1].strip()}"
    return f"engine exited with code {outcome.returncode} and no message"


def run_engine(
    python: str,
    args: list[str],
    engine_root: str | os.PathLike | None,
    on_progress: Callable[[float], None] | None = None,
    on_log: LogCallback | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    on_event: Callable[[dict], None] | None = None,
    gpu_names: dict[str, str] | None = None,
    poll_seconds: float = 0.1,
    terminate_grace_seconds: float = 10.0,
) -> EngineOutcome:
    """Run `python -m engine *args`; report percent (0-100), every JSONL event (`on_event`) and log lines;
    terminate it when cancelled. `gpu_names` ({"cuda:0": "NVIDIA ..."}) names the device in the log."""
    on_log = on_log or (lambda line, level: None)
    cmd = [python, "-m", "engine", *args]
    on_log("$ " + subprocess.list2cmdline(cmd) + (f"   (engine source: {engine_root})" if engine_root else ""), INFO)
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            encoding="utf-8", errors="replace", env=engine_process_env(engine_root),
            cwd=str(engine_root) if engine_root and Path(engine_root).is_dir() else None,
            start_new_session=os.name == "posix",
        )
    except OSError as exc:
        return EngineOutcome(None, error=f"cannot start the engine interpreter '{python}': {exc.strerror or exc}; "
                                         "set the engine interpreter in the dock's Engine group")
    lines: queue.Queue = queue.Queue()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, tag, lines), daemon=True).start()
    outcome = EngineOutcome(None)
    stderr_tail: list[str] = []
    open_streams = 2
    while open_streams:
        if not outcome.cancelled and is_cancelled and is_cancelled():
            outcome.cancelled = True
            on_log("Cancelling: stopping the engine", INFO)
            proc.terminate()
        try:
            tag, line = lines.get(timeout=poll_seconds)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        if tag == "err":
            stderr_tail = (stderr_tail + [line])[-50:]
            outcome.log.append(line)
            if not line.startswith("error:"):  # the reason is reported once, by the caller, from outcome.error
                on_log(line, WARNING if line.startswith("warning:") else INFO)
            continue
        _handle_stdout(line, outcome, on_progress, on_log, on_event, gpu_names or {})
    try:
        outcome.returncode = proc.wait(timeout=terminate_grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        outcome.returncode = proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if outcome.cancelled:
        outcome.error = "cancelled"
    elif outcome.returncode != 0 or outcome.done is None:
        outcome.error = outcome.error or _reason(outcome, stderr_tail)
    return outcome


def _handle_stdout(line: str, outcome: EngineOutcome, on_progress, on_log: LogCallback, on_event,
                   gpu_names: dict[str, str]) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or "event" not in event:
        outcome.log.append(line)
        on_log(line, INFO)
        return
    if on_event:
        on_event(event)
    kind = event["event"]
    if kind == "progress":
        if on_progress:
            on_progress(float(event.get("percent", 0.0)))
        return
    text, level = None, INFO
    if kind == "start" and event.get("message"):  # chips, train, evaluate: their own words
        device = event.get("device")
        text = str(event["message"]) + (f" on {device_text(str(device), gpu_names)}" if device else "")
    elif kind == "start":
        tiles = event.get("tiles", "?")
        text = f"Model loaded, running on {device_text(str(event.get('device', '')), gpu_names)}: {tiles} tiles"
    elif kind == "done":
        outcome.done = event
    elif kind == "error":
        outcome.error = str(event.get("message", "unknown engine error"))
    elif kind == "warning":
        text, level = f"warning: {event.get('message', '')}", WARNING
    else:
        text = f"{kind}: " + ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "classes"))
    if text is not None:
        outcome.log.append(text)
        on_log(text, level)
