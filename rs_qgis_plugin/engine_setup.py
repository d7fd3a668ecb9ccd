"""Set up the engine without a terminal: a virtualenv made from a Python >= 3.10, the engine's pinned
requirements installed into it, the engine bundled with the plugin linked into it, then the engine check.

Pure Python (no QGIS): the dock's set-up dialog runs `EngineSetup` in a worker thread, and the same set-up
runs headless (to time it on a fresh machine, or on a server for qgis_process):

    python -m rs_qgis_plugin.engine_setup --target ~/rsseg-engine [--python /usr/bin/python3]
        [--index-url URL] [--extra-index-url URL] [--find-links DIR] [--no-index] [--estimate-only]

Nothing is in use until the end: the caller switches the engine setting only after a good check. A failed
or cancelled set-up removes the folder it made (the target must be new, or an empty folder).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rs_qgis_plugin.engine_env import EngineReport, check_engine, engine_root
from rs_qgis_plugin.pip_install import (
    Estimate,
    Package,
    PipError,
    PipSource,
    dry_run,
    estimate_of,
    install,
    pip_env,
    pip_version,
    run_streaming,
)

MIN_PYTHON = (3, 10)
PTH_NAME = "rsseg-engine.pth"  # in the virtualenv's site-packages: the plugin's engine folder
_PROBE = ("import json, sys, importlib.util as u; print(json.dumps({'executable': sys.executable, "
          "'version': list(sys.version_info[:3]), 'venv': bool(u.find_spec('venv')), "
          "'ensurepip': bool(u.find_spec('ensurepip'))}))")
# progress (percent) at the start of each step
_STEPS = {"check": 0.0, "venv": 1.0, "resolve": 5.0, "install": 10.0, "link": 90.0, "engine": 92.0, "done": 100.0}


class SetupError(RuntimeError):
    """The set-up failed; the message is one line: what failed and pip's (or venv's) reason."""


class SetupCancelled(SetupError):
    """The set-up was cancelled; its folder is removed."""


@dataclass(frozen=True)
class PythonInfo:
    """A Python found on this machine: the path to run, its version, and why it cannot make the engine's
    virtualenv ("" when it can)."""

    path: str
    version: tuple[int, int, int]
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem

    @property
    def label(self) -> str:
        version = ".".join(str(v) for v in self.version)
        return f"Python {version} – {self.path}" + (f" ({self.problem})" if self.problem else "")


def probe_python(path: str, timeout: float = 20.0) -> PythonInfo | None:
    """What `path` is (None when it does not run as a Python)."""
    try:
        proc = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True, timeout=timeout, env=pip_env(),
                              stdin=subprocess.DEVNULL)
        data = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    if not isinstance(data, dict):
        return None
    version = tuple(int(v) for v in data.get("version", (0, 0, 0)))[:3]
    problem = ""
    if version[:2] < MIN_PYTHON:
        problem = f"too old: the engine needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer"
    elif not (data.get("venv") and data.get("ensurepip")):
        problem = "cannot make virtualenvs: install its venv module (Debian/Ubuntu: sudo apt install python3-venv)"
    return PythonInfo(path, version, problem)


def _candidate_paths(extra: Iterable[str] = ()) -> list[str]:
    """Interpreters worth probing: `extra`, versioned and plain pythons on PATH, usual install places, and the
    Python that runs QGIS (Windows and macOS installers bundle one)."""
    names = [f"python3.{minor}" for minor in range(14, MIN_PYTHON[1] - 1, -1)] + ["python3", "python"]
    paths = [*extra, *(shutil.which(n) or "" for n in names), "/usr/bin/python3", "/usr/local/bin/python3",
             "/opt/homebrew/bin/python3"]
    if Path(sys.executable).name.lower().startswith("python"):
        paths.append(sys.executable)
    for prefix in dict.fromkeys((sys.exec_prefix, sys.base_prefix)):
        paths += [str(Path(prefix) / "python.exe"), str(Path(prefix) / "python3.exe"), str(Path(prefix) / "bin" /
                                                                                             "python3")]
    return [p for p in dict.fromkeys(paths) if p and Path(p).is_file()]


def find_pythons(extra: Iterable[str] = ()) -> list[PythonInfo]:
    """The Pythons on this machine (one entry per interpreter file), usable ones first, newest first."""
    paths = _candidate_paths(extra)
    with ThreadPoolExecutor(max_workers=6) as pool:
        found = [info for info in pool.map(probe_python, paths) if info is not None]
    unique: dict[str, PythonInfo] = {}
    for info in found:
        unique.setdefault(os.path.realpath(info.path), info)
    return sorted(unique.values(), key=lambda i: (not i.usable, [-v for v in i.version]))


def default_target(folder: str | Path, name: str = "rsseg-engine") -> Path:
    """`folder/name`, or `name-2`, `name-3`, ... when that exists and is not empty (an earlier engine stays)."""
    base = Path(folder)
    candidate, n = base / name, 2
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        candidate, n = base / f"{name}-{n}", n + 1
    return candidate


def venv_python(target: str | Path) -> Path:
    """The interpreter of the virtualenv in `target`."""
    return Path(target) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def folder_bytes(path: str | Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class SetupPlan:
    """What to set up: the virtualenv folder, the Python it is made from, the requirements file, the folder
    holding the engine package (linked into the virtualenv) and where pip takes packages from."""

    target: Path
    python: str
    requirements: Path
    engine_root: Path
    source: PipSource = PipSource()

    @classmethod
    def default(cls, target: str | Path, python: str, source: PipSource = PipSource()) -> SetupPlan:
        """The plugin's own engine (checkout or bundle) and its requirements.txt."""
        root = engine_root()
        if root is None:
            raise SetupError("engine source not found next to the plugin: reinstall the plugin zip")
        return cls(Path(target).expanduser(), python, root / "requirements.txt", root, source)


class EngineSetup:
    """`prepare()` (check the folder, make the virtualenv, resolve what to download) -> Estimate, then
    `install()` -> the engine check; or `run()` for both. Failures raise SetupError (SetupCancelled when
    `cancelled()` turned True) after removing the folder this set-up made.

    `on_progress(percent, status)`, `on_log(line)` and `cancelled()` are called from the thread running it.
    """

    def __init__(self, plan: SetupPlan, on_progress: Callable[[float, str], None] | None = None,
                 on_log: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None) -> None:
        self.plan = plan
        self.on_progress = on_progress or (lambda percent, status: None)
        self.on_log = on_log or (lambda line: None)
        self.cancelled = cancelled or (lambda: False)
        self.estimate: Estimate | None = None
        self.packages: list[Package] = []
        self._made: Path | None = None  # the folder this set-up created (removed on failure)
        self._emptied: Path | None = None  # an empty folder it filled (emptied on failure)

    @property
    def python(self) -> str:
        """The new engine interpreter."""
        return str(venv_python(self.plan.target))

    def _step(self, step: str, status: str) -> None:
        self._check_cancel()
        self.on_progress(_STEPS[step], status)
        self.on_log(status)

    def _check_cancel(self) -> None:
        if self.cancelled():
            raise SetupCancelled("cancelled: the engine setting is unchanged")

    def _guarded(self, work: Callable[[], object]) -> object:
        try:
            return work()
        except BaseException:
            self.discard()
            raise

    def prepare(self) -> Estimate:
        """Check the folder and the Python, make the virtualenv, and ask pip what the requirements take."""
        return self._guarded(self._prepare)

    def _prepare(self) -> Estimate:
        plan = self.plan
        self._step("check", f"Checking {plan.python} and {plan.target}")
        info = probe_python(plan.python)
        if info is None:
            raise SetupError(f"Python '{plan.python}' does not run; choose another Python (3.10 or newer)")
        if not info.usable:
            raise SetupError(f"Python '{plan.python}' {'.'.join(map(str, info.version))}: {info.problem}")
        if not plan.requirements.is_file():
            raise SetupError(f"requirements file {plan.requirements} not found: reinstall the plugin zip")
        self._claim(plan.target)
        self._step("venv", f"Creating the virtualenv in {plan.target}")
        result = run_streaming([plan.python, "-m", "venv", str(plan.target)], self.on_log, self.cancelled)
        self._check_cancel()
        if result.returncode != 0 or not venv_python(plan.target).is_file():
            text = "\n".join(result.lines)
            why = ("ensurepip is not available: install the python3-venv package (Debian/Ubuntu: sudo apt install "
                   "python3-venv)") if "ensurepip" in text else (result.lines[-1].strip() if result.lines else
                                                                  f"exit code {result.returncode}")
            raise SetupError(f"could not create the virtualenv in {plan.target}: {why}")
        self._step("resolve", "Working out what to download…")
        try:
            packages = dry_run(self.python, plan.requirements, plan.source, self.on_log, self.cancelled)
        except PipError as exc:
            raise SetupError(f"pip cannot install the engine's requirements: {exc}") from None
        self._check_cancel()
        self.packages = packages or []
        self.estimate = estimate_of(self.packages)
        free = shutil.disk_usage(plan.target).free
        if self.estimate.disk_bytes > free:
            raise SetupError(f"{self.estimate.text()}, but only {free / 1e9:.1f} GB are free on {plan.target}: "
                             "free some space or choose a folder on another disk")
        self.on_log(self.estimate.text())
        return self.estimate

    def _claim(self, target: Path) -> None:
        """Make `target` (it must not exist, or be an empty folder) and remember it for the clean-up."""
        if target.exists():
            if not target.is_dir() or any(target.iterdir()):
                raise SetupError(f"folder {target} is not empty: choose a new or empty folder for the engine")
            self._emptied = target
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SetupError(f"cannot create {target} ({exc.strerror}): choose a folder you can write to") from None
        if self._emptied is None:
            self._made = target

    def install(self) -> EngineReport:
        """Install the requirements, link the engine, check it; the report says "engine OK: torch ..."."""
        if self.estimate is None:
            raise RuntimeError("call prepare() first")
        return self._guarded(self._install)

    def _install(self) -> EngineReport:
        plan = self.plan
        self._step("install", "Installing the engine's requirements…")
        raw = pip_version(self.python) >= (24, 1)
        span = _STEPS["link"] - _STEPS["install"]
        try:
            finished = install(self.python, plan.requirements, plan.source, self.packages, self.on_log,
                               lambda f, status: self.on_progress(_STEPS["install"] + span * f, status),
                               self.cancelled, raw_progress=raw)
        except PipError as exc:
            raise SetupError(f"pip could not install the engine's requirements: {exc}") from None
        if not finished:
            self._check_cancel()
        self._step("link", f"Linking the engine in {plan.engine_root}")
        self._link_engine()
        self._step("engine", "Checking the engine…")
        report = check_engine(self.python)
        self._check_cancel()
        if not report.ok:
            raise SetupError(report.message)
        self.on_progress(_STEPS["done"], report.message)
        self.on_log(report.message)
        self._made = self._emptied = None  # done: nothing to clean up any more
        return report

    def _link_engine(self) -> None:
        """A .pth file in the virtualenv's site-packages makes the plugin's engine importable there (`python -m
        engine` from a terminal too); it follows plugin updates, as the plugin runs the engine it bundles."""
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        proc = subprocess.run([self.python, "-c", code], capture_output=True, text=True, env=pip_env(),
                              stdin=subprocess.DEVNULL)
        site = Path(proc.stdout.strip())
        if proc.returncode != 0 or not site.is_dir():
            raise SetupError(f"cannot find the site-packages of {self.python}: {proc.stderr.strip()[-200:]}")
        (site / PTH_NAME).write_text(str(self.plan.engine_root) + "\n", encoding="utf-8")

    def run(self, confirm: Callable[[Estimate], bool] | None = None) -> EngineReport:
        """prepare(), then install() when `confirm(estimate)` agrees (SetupCancelled when it does not)."""
        estimate = self.prepare()
        if confirm is not None and not confirm(estimate):
            self.discard()
            raise SetupCancelled("not installed: the engine setting is unchanged")
        return self.install()

    def discard(self) -> None:
        """Remove what this set-up made (the folder it created, or the content of the empty folder it filled)."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
        elif self._emptied is not None:
            for child in self._emptied.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        self._made = self._emptied = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rs_qgis_plugin.engine_setup",
                                     description="Set up the rsseg engine in a new virtualenv, as the plugin's "
                                                 "'Set up engine…' does.")
    parser.add_argument("--target", required=True, help="new (or empty) folder for the virtualenv")
    parser.add_argument("--python", help="Python >= 3.10 to make it from (default: the newest one found)")
    parser.add_argument("--requirements", help="requirements file (default: the engine's requirements.txt)")
    parser.add_argument("--index-url")
    parser.add_argument("--extra-index-url", action="append", default=[])
    parser.add_argument("--find-links", action="append", default=[], help="folder of wheels (repeatable)")
    parser.add_argument("--no-index", action="store_true", help="only --find-links, no package index")
    parser.add_argument("--estimate-only", action="store_true", help="print the download and disk estimate, "
                                                                     "then remove the folder")
    parser.add_argument("--verbose", action="store_true", help="print pip's output too")
    args = parser.parse_args(argv)
    python = args.python
    if python is None:
        usable = [p for p in find_pythons() if p.usable]
        if not usable:
            print("error: no Python 3.10 or newer with venv found; install one or pass --python", file=sys.stderr)
            return 1
        python = usable[0].path
    source = PipSource(args.index_url, tuple(args.extra_index_url), tuple(args.find_links), args.no_index)
    plan = SetupPlan.default(args.target, python, source)
    if args.requirements:
        plan = SetupPlan(plan.target, python, Path(args.requirements), plan.engine_root, source)
    started = time.monotonic()
    last = [""]

    def progress(percent: float, status: str) -> None:
        if status != last[0]:
            last[0] = status
            print(f"[{percent:5.1f}% {time.monotonic() - started:6.0f} s] {status}", file=sys.stderr, flush=True)

    setup = EngineSetup(plan, progress, (lambda line: print(f"    {line}", file=sys.stderr)) if args.verbose else None)
    try:
        estimate = setup.prepare()
        print(estimate.text(), file=sys.stderr)
        if args.estimate_only:
            setup.discard()
            return 0
        report = setup.install()
    except KeyboardInterrupt:
        setup.discard()
        print("error: cancelled; the folder was removed", file=sys.stderr)
        return 130
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    minutes = (time.monotonic() - started) / 60
    print(f"{report.message}\nset up in {minutes:.1f} min; {plan.target} holds "
          f"{folder_bytes(plan.target) / 1e9:.2f} GB\nuse it: RSSEG_ENGINE_PYTHON={setup.python} (or choose it in "
          "the dock's Engine group)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
