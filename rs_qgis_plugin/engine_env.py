"""Find and validate the engine: its source folder, its Python interpreter, its models, its GPUs.

Pure Python (no QGIS, no torch): everything that needs torch is asked of the engine in a subprocess.
The engine source is the checkout next to this plugin (developer install) or `engine_bundle/` inside
the plugin (packaged zip).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from rs_qgis_plugin.models import ModelInfo, parse_listing
from rs_qgis_plugin.runner import engine_process_env

PLUGIN_DIR = Path(__file__).resolve().parent
SET_UP_HINT = "set the engine up with 'Set up engine…' (the dock's Engine group)"
BUNDLE_DIR = PLUGIN_DIR / "engine_bundle"


def engine_root() -> Path | None:
    """The folder that contains the `engine` package: the checkout, else the bundled copy."""
    for root in (PLUGIN_DIR.parent, BUNDLE_DIR):
        if (root / "engine" / "cli.py").is_file():
            return root
    return None


def default_python() -> str:
    """The engine's virtualenv when the plugin runs from a checkout (`make setup` makes .venv), else python3."""
    root = engine_root()
    for exe in ("bin/python", "Scripts/python.exe"):
        if root is not None and (root / ".venv" / exe).is_file():
            return str(root / ".venv" / exe)
    return "python3" if os.name == "posix" else "python"


def _resolve_interpreter(python: str) -> str | None:
    if os.path.sep in python or (os.altsep and os.altsep in python):
        return python if Path(python).is_file() else None
    return shutil.which(python)


@dataclass(frozen=True)
class EngineReport:
    """Result of the engine check: `message` is the one line shown to the user."""

    ok: bool
    message: str
    devices: tuple[tuple[str, str], ...] = ()  # (device id, label) for each GPU the engine sees
    details: dict = field(default_factory=dict)

    @property
    def gpu_names(self) -> dict[str, str]:
        """{"cuda:0": "NVIDIA H200", ...} from the device labels."""
        return {device: label.split(": ", 1)[-1] for device, label in self.devices}


def _run_json(python: str, args: list[str], timeout: float) -> tuple[int | None, dict | list | None, str]:
    """Run `python -m engine *args` and parse its stdout as JSON; (exit code, json or None, stderr)."""
    root = engine_root()
    try:
        proc = subprocess.run([python, "-m", "engine", *args], capture_output=True, text=True, timeout=timeout,
                              env=engine_process_env(root), stdin=subprocess.DEVNULL,
                              encoding="utf-8", errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, None, str(exc)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        data = None
    return proc.returncode, data, proc.stderr


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _engine_reason(stderr: str, code: int | None) -> str:
    """The engine's one-line reason: its last stderr line without "error:", else the exit code."""
    line = _last_line(stderr)
    return line[len("error:"):].strip() if line.startswith("error:") else (line or f"engine exit code {code}")


def check_engine(python: str, timeout: float = 180.0) -> EngineReport:
    """Ask the interpreter `python` whether it can run the engine: torch, CUDA, GPUs or what is missing."""
    exe = _resolve_interpreter(python)
    if exe is None:
        return EngineReport(False, f"engine interpreter '{python}' not found: {SET_UP_HINT}, or choose the python "
                                   "of the engine's virtualenv (a checkout's `make setup` creates .venv/bin/python)")
    root = engine_root()
    if root is None:
        return EngineReport(False, f"engine source not found next to the plugin ({PLUGIN_DIR}): reinstall the "
                                   "plugin zip, or run the plugin from a checkout")
    code, data, stderr = _run_json(exe, ["env", "--json"], timeout)
    if not isinstance(data, dict):
        why = _last_line(stderr) or f"exit code {code}"
        return EngineReport(False, f"engine does not start with '{exe}': {why}; {SET_UP_HINT}, or use a Python >= 3.10 "
                                   f"and install: {exe} -m pip install -r {root / 'requirements.txt'}")
    gpus = tuple((str(g.get("device")), f"{g.get('device')}: {g.get('name', 'GPU')}") for g in data.get("gpus", []))
    packages = data.get("packages", {})
    missing = list(data.get("missing", []))
    if missing:
        req = data.get("requirements") or str(root / "requirements.txt")
        how = data.get("install_command") or f"{exe} -m pip install -r {req}"
        return EngineReport(False, f"engine NOT OK with {exe}: missing {', '.join(missing)}; {SET_UP_HINT}, or "
                                   f"install with: {how}", gpus, data)
    cuda = f"{data.get('cuda_version') or 'none'} ({'available' if data.get('cuda_available') else 'not available'})"
    names = ", ".join(label.split(": ", 1)[1] for _, label in gpus) or "none"
    torch_version = packages.get("torch") or "?"
    return EngineReport(True, f"engine OK: torch {torch_version}, CUDA {cuda}, GPUs {names}", gpus, data)


def interpreter_stamp(python: str) -> str:
    """Identifies the interpreter file (resolved path, size, modification time); "" when it is not found.
    A remembered engine check is trusted only while this stays the same."""
    exe = _resolve_interpreter(python)
    if exe is None:
        return ""
    try:
        real = os.path.realpath(exe)
        info = os.stat(real)
    except OSError:
        return ""
    return f"{real}|{info.st_size}|{info.st_mtime_ns}"


class ModelListError(RuntimeError):
    """The engine could not list its models; the message is the one-line reason."""


def list_models(python: str, timeout: float = 300.0) -> list[ModelInfo]:
    """The engine's models (`python -m engine models --json`), default first; ModelListError with the reason.
    Slow (the engine loads every checkpoint): call it off the UI thread."""
    exe = _resolve_interpreter(python)
    if exe is None:
        raise ModelListError(f"engine interpreter '{python}' not found: set it in the dock's Engine group or "
                             "in Processing > Options > Providers")
    code, data, stderr = _run_json(exe, ["models", "--json"], timeout)
    if code != 0 or not isinstance(data, list):
        raise ModelListError(_engine_reason(stderr, code))
    return parse_listing(data)


class ModelInfoError(RuntimeError):
    """The engine could not read a checkpoint; the message is the engine's one-line reason."""


def checkpoint_info(python: str, path: str, timeout: float = 180.0) -> ModelInfo:
    """Read a checkpoint's spec through the engine (`rsseg info --json`); ModelInfoError with the reason."""
    exe = _resolve_interpreter(python)
    if exe is None:
        raise ModelInfoError(f"engine interpreter '{python}' not found: set it in the dock's Engine group")
    code, data, stderr = _run_json(exe, ["info", path, "--json"], timeout)
    if code != 0 or not isinstance(data, dict) or "spec" not in data:
        raise ModelInfoError(_engine_reason(stderr, code))
    return ModelInfo.for_checkpoint(path, data["spec"], data.get("metrics"), data.get("title"), data.get("sensor"))

