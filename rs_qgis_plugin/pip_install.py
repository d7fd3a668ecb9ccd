"""pip for the engine set-up, pure Python (no QGIS): where packages come from, what an install will download
(pip's dry-run report), a progress fraction read from pip's output, and pip's failure reason in one line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

UNPACKED_PER_DOWNLOADED = 2.0  # disk used per byte downloaded, for wheels whose content is not read (remote)
DOWNLOAD_SHARE = 0.8  # of the install step's progress: the downloads; the rest is unpacking


@dataclass(frozen=True)
class PipSource:
    """Where pip takes packages from: PyPI by default; an index, extra indexes, local folders of wheels
    (`find_links`), and `no_index` to use only those folders (offline installs, tests)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def args(self) -> list[str]:
        args = ["--index-url", self.index_url] if self.index_url else []
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args + (["--no-index"] if self.no_index else [])


@dataclass(frozen=True)
class Package:
    """One distribution pip would install: its file, download size and unpacked size in bytes (None: unknown)."""

    name: str
    version: str
    url: str
    size: int | None
    unpacked: int | None

    @property
    def filename(self) -> str:
        return urllib.parse.unquote(Path(urllib.parse.urlparse(self.url).path).name)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 0.95e8 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{max(n, 1) / 1e3:.0f} kB"


@dataclass(frozen=True)
class Estimate:
    """What installing the requirements takes: bytes to download and disk bytes once unpacked."""

    packages: tuple[Package, ...]
    download_bytes: int
    disk_bytes: int
    unknown: int = 0  # packages of unknown size (not counted)

    def text(self) -> str:
        """E.g. "Downloads about 2.9 GB (23 packages); the environment needs about 6.1 GB of disk"."""
        n = len(self.packages)
        line = (f"Downloads about {_gb(self.download_bytes)} ({n} package{'s' if n != 1 else ''}); the environment "
                f"needs about {_gb(self.disk_bytes)} of disk")
        return line + (f" (sizes of {self.unknown} packages unknown)" if self.unknown else "")


def pip_env() -> dict[str, str]:
    """pip's environment: nothing of QGIS's Python (PYTHONPATH, PYTHONHOME), no prompts, no version nagging."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return env


@dataclass
class StreamResult:
    returncode: int | None
    cancelled: bool
    lines: list[str]


def run_streaming(cmd: list[str], on_line: Callable[[str], None], cancelled: Callable[[], bool],
                  poll_seconds: float = 0.2, grace_seconds: float = 10.0) -> StreamResult:
    """Run `cmd`, passing each output line (stdout and stderr merged) to `on_line`; terminate it (and its
    process group) as soon as `cancelled()` is True."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, encoding="utf-8", errors="replace", env=pip_env(),
                            start_new_session=os.name == "posix")
    lines: list[str] = []
    done = threading.Event()

    def pump() -> None:
        for line in iter(proc.stdout.readline, ""):
            line = line.rstrip("\r\n")
            lines.append(line)
            on_line(line)
        done.set()

    reader = threading.Thread(target=pump, name="rsseg-pip", daemon=True)
    reader.start()
    stopped = False
    try:
        while not done.wait(poll_seconds):
            if not stopped and cancelled():
                stopped = True
                _terminate(proc)
    except BaseException:  # Ctrl-C in a terminal: pip, in its own session, must not run on
        _terminate(proc)
        raise
    try:
        code = proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    reader.join(1.0)
    proc.stdout.close()
    return StreamResult(code, stopped, lines)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM to pip and what it started (its build processes); plain terminate elsewhere."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, 15)
        else:
            proc.terminate()
    except OSError:
        pass


def pip_reason(lines: list[str], code: int | None) -> str:
    """pip's reason in one line: its last "ERROR:" line, else its last line, else the exit code."""
    errors = [ln.strip()[len("ERROR:"):].strip() for ln in lines if ln.strip().startswith("ERROR:")]
    errors = [e for e in errors if e]
    if errors:
        return errors[-1]
    text = [ln.strip() for ln in lines if ln.strip()]
    return text[-1] if text else f"pip exit code {code}"


def _local_path(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return None


def _remote_size(url: str, timeout: float = 20.0) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            length = response.headers.get("Content-Length")
        return int(length) if length else None
    except (OSError, ValueError):
        return None


def _sizes(url: str) -> tuple[int | None, int | None]:
    """(download size, unpacked size): exact for local wheels, HEAD + a ratio for remote files."""
    path = _local_path(url)
    if path is not None:
        try:
            size = path.stat().st_size
        except OSError:
            return None, None
        try:
            with zipfile.ZipFile(path) as archive:
                return size, sum(info.file_size for info in archive.infolist())
        except (OSError, zipfile.BadZipFile):
            return size, int(size * UNPACKED_PER_DOWNLOADED)
    size = _remote_size(url)
    return size, int(size * UNPACKED_PER_DOWNLOADED) if size is not None else None


def packages_of_report(report: dict) -> list[Package]:
    """The packages of pip's `--report` JSON (sizes measured: local files read, remote ones asked by HEAD)."""
    items = [(str(i.get("metadata", {}).get("name", "?")), str(i.get("metadata", {}).get("version", "?")),
              str(i.get("download_info", {}).get("url", ""))) for i in report.get("install", [])]
    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(lambda item: _sizes(item[2]), items))
    return [Package(name, version, url, size, unpacked) for (name, version, url), (size, unpacked) in zip(items, sizes)]


def estimate_of(packages: list[Package]) -> Estimate:
    known = [p for p in packages if p.size is not None]
    return Estimate(tuple(packages), sum(p.size for p in known), sum(p.unpacked or 0 for p in known),
                    len(packages) - len(known))


class PipError(RuntimeError):
    """pip failed; the message is its reason in one line."""


def dry_run(python: str, requirements: Path, source: PipSource, on_line: Callable[[str], None],
            cancelled: Callable[[], bool]) -> list[Package] | None:
    """What `pip install -r requirements` would install into `python`'s environment (None when cancelled);
    PipError with pip's reason when it cannot resolve them."""
    fd, report_path = tempfile.mkstemp(prefix="rsseg-pip-report-", suffix=".json")
    os.close(fd)
    try:
        cmd = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report", report_path,
               "--progress-bar", "off", "-r", str(requirements), *source.args()]
        result = run_streaming(cmd, on_line, cancelled)
        if result.cancelled:
            return None
        if result.returncode != 0:
            raise PipError(pip_reason(result.lines, result.returncode))
        report = json.loads(Path(report_path).read_text(encoding="utf-8") or "{}")
    finally:
        Path(report_path).unlink(missing_ok=True)
    return packages_of_report(report)


_SIZE = re.compile(r"\((\d+(?:\.\d+)?)\s*(kB|MB|GB|bytes)\)")
_UNITS = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
_RAW = re.compile(r"^Progress (\d+) of (\d+)$")
_FILE = re.compile(r"^\s*(?:Downloading|Using cached|Processing)\s+(\S+)")


class PipProgress:
    """Follows `pip install` output: fraction 0..1 of the install step, and a status line.

    Downloads weigh DOWNLOAD_SHARE, by bytes (file sizes from the dry run, or pip's "(12.3 MB)"); a file
    counts as done when the next one starts or the installing begins. `--progress-bar raw` lines
    ("Progress 1000 of 5000", pip >= 24.1) move the bar inside a file.
    """

    def __init__(self, packages: list[Package] | tuple[Package, ...] = ()) -> None:
        self.sizes = {p.filename: p.size for p in packages if p.size}
        self.total = max(1, sum(self.sizes.values()))
        self.done_bytes = 0
        self.current = 0  # size of the file being downloaded
        self.partial = 0  # bytes of it so far (raw progress)
        self.fraction = 0.0
        self.status = "Resolving the requirements…"

    def feed(self, line: str) -> bool:
        """Take one output line; True when `fraction` or `status` changed."""
        before = (self.fraction, self.status)
        raw = _RAW.match(line.strip())
        match = _FILE.match(line)
        if raw and self.current:
            self.partial = min(int(raw.group(1)), self.current)
        elif match:
            name = urllib.parse.unquote(Path(urllib.parse.urlparse(match.group(1)).path).name)
            size = _SIZE.search(line)
            self.done_bytes += self.current
            self.current = self.sizes.get(name) or (int(float(size.group(1)) * _UNITS[size.group(2)]) if size else 0)
            self.partial = 0
            self.total = max(self.total, self.done_bytes + self.current)
            verb = "Getting" if match.group(0).strip().startswith("Processing") else "Downloading"
            self.status = f"{verb} {name.split('-')[0]}" + (f" ({_gb(self.current)})" if self.current else "")
        elif line.startswith("Installing collected packages"):
            self.done_bytes, self.current, self.partial = self.total, 0, 0
            count = len(line.split(":", 1)[-1].split(","))
            self.status = f"Installing {count} packages (unpacking takes a few minutes)…"
        elif line.startswith("Successfully installed"):
            self.fraction, self.status = 1.0, "Packages installed"
            return (self.fraction, self.status) != before
        downloaded = min(1.0, (self.done_bytes + self.partial) / self.total)
        self.fraction = max(self.fraction, DOWNLOAD_SHARE * downloaded)
        return (self.fraction, self.status) != before


def install(python: str, requirements: Path, source: PipSource, packages: list[Package] | tuple[Package, ...],
            on_line: Callable[[str], None], on_fraction: Callable[[float, str], None],
            cancelled: Callable[[], bool], raw_progress: bool = False) -> bool:
    """`pip install -r requirements` into `python`'s environment; False when cancelled, PipError on failure."""
    tracker = PipProgress(packages)

    def line(text: str) -> None:
        if not _RAW.match(text.strip()):
            on_line(text)
        if tracker.feed(text):
            on_fraction(tracker.fraction, tracker.status)

    cmd = [python, "-m", "pip", "install", "--progress-bar", "raw" if raw_progress else "off", "-r",
           str(requirements), *source.args()]
    result = run_streaming(cmd, line, cancelled)
    if result.cancelled:
        return False
    if result.returncode != 0:
        raise PipError(pip_reason(result.lines, result.returncode))
    return True


def pip_version(python: str) -> tuple[int, ...]:
    """The pip version of `python` as numbers, () when pip does not run."""
    try:
        out = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60,
                             env=pip_env(), stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.match(r"pip (\d+)\.(\d+)", out)
    return tuple(int(v) for v in match.groups()) if match else ()
