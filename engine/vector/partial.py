"""Temporary ".partial" folders of the atomic writers, and the clean-up of those a killed run left behind.

A writer works in a hidden folder next to its destination (same file system, so finishing is a rename):
``.rsseg-<pid>-<token>.partial/``, holding a marker ``rsseg-partial.json`` {"pid", "host", "output"}.
SIGTERM, SIGHUP and Ctrl-C remove it; SIGKILL or a power cut cannot. The next run writing the same output
removes the folders of runs on this host whose process is gone, and reports those it cannot judge (another
host, or a folder from before the marker existed).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

MARKER = "rsseg-partial.json"
_PREFIX = ".rsseg-"
_SUFFIX = ".partial"


def make_partial_dir(destination: Path) -> Path:
    """Create the private work folder for `destination` (its marker names the output and this process)."""
    folder = destination.parent / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
    folder.mkdir()
    try:
        marker = {"pid": os.getpid(), "host": socket.gethostname(), "output": destination.name}
        (folder / MARKER).write_text(json.dumps(marker))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process (or we cannot tell): not ours to judge
    return True


def _owner(folder: Path) -> dict | None:
    try:
        owner = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def clean_stale_partials(destination: Path) -> list[str]:
    """Remove the work folders that killed runs left for `destination`; return one line per folder removed
    or left in place (for the run's warnings)."""
    notes: list[str] = []
    host = socket.gethostname()
    try:
        candidates = [p for p in destination.parent.iterdir() if p.name.endswith(_SUFFIX) and p.is_dir()]
    except OSError:
        return notes
    legacy_prefix = f".{destination.name}."
    for folder in candidates:
        if folder.name.startswith(_PREFIX):
            owner = _owner(folder)
            if owner is None or owner.get("output") != destination.name:
                continue
            pid = owner.get("pid")
            if owner.get("host") == host and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)
                if not folder.exists():
                    notes.append(f"removed '{folder}', left by an earlier run (process {pid}) that was killed "
                                 f"while writing '{destination.name}'")
                    continue
            if owner.get("host") != host:
                notes.append(f"'{folder}' was left by a run on host {owner.get('host')} writing "
                             f"'{destination.name}'; delete it once that run has ended")
        elif folder.name.startswith(legacy_prefix):  # an older rsseg's temporary folder (no marker)
            notes.append(f"'{folder}' was left by an earlier run writing '{destination.name}'; "
                         "delete it if no rsseg run is writing that output now")
    return notes
