"""Work done once per test run and shared by the pytest-xdist workers: the first worker that asks does it, the
others wait for it and use its result (without xdist: once per session, as a session fixture)."""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole run (with pytest-xdist, the one above the workers' own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The run's folder `name`, filled by `make(folder)` the first time any worker asks for it."""
    root = run_folder(tmp_path_factory)
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here; released when the file closes
        if not (folder / ".done").is_file():
            folder.mkdir(exist_ok=True)
            make(folder)
            (folder / ".done").touch()
    return folder


def once_json(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[], object]) -> object:
    """`make()`'s JSON-able result, computed the first time any worker asks for it."""
    folder = once(tmp_path_factory, name, lambda f: (f / "value.json").write_text(json.dumps(make())))
    return json.loads((folder / "value.json").read_text())
