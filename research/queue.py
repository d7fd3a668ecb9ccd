"""A sequential job queue for training campaigns: one heavy job at a time, a log per job.

    python -m research.queue JOBS_FILE [--runs DIR] [--wait SECONDS]

JOBS_FILE holds one job per line, `NAME: shell command` (blank lines and `#` comments are skipped). Jobs
run in file order, one at a time, each under the machine-wide heavy-job lock (a flock file that other heavy
work can take too: `$HEAVY_LOCK`, default /tmp/heavy-job.lock), with stdout and stderr in DIR/NAME.log.
A job that exits 0 gets DIR/NAME.done, one that fails DIR/NAME.failed (with its exit code). The file is
read again after every job, so jobs can be appended while the queue runs. A queue that is killed and
started again re-runs the job it was in; a training job resumes from its last checkpoint.
Without --wait the queue ends when no job is left; with it, it polls the file every SECONDS.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import re
import subprocess
import sys
import time
from pathlib import Path

JOB_LINE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*:\s*(.+)$")


def read_jobs(path: Path) -> list[tuple[str, str]]:
    """`NAME: command` lines -> [(name, command)], in file order; a repeated name keeps its first line."""
    jobs: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = JOB_LINE.match(line)
        if not match:
            raise SystemExit(f"{path}:{number}: expected 'NAME: command', got {line.strip()[:60]!r}")
        jobs.setdefault(match.group(1), match.group(2))
    return list(jobs.items())


def next_job(jobs: list[tuple[str, str]], runs: Path) -> tuple[str, str] | None:
    """The first job with neither a .done nor a .failed marker."""
    for name, command in jobs:
        if not (runs / f"{name}.done").exists() and not (runs / f"{name}.failed").exists():
            return name, command
    return None


def run_job(name: str, command: str, runs: Path, lock_path: str) -> int:
    """Run one job under the heavy-job lock; write its log and its marker; return its exit code."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"queue: waiting for the running heavy job before {name}", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        Path(f"{lock_path}.who").write_text(f"pid {os.getpid()} since {time.strftime('%FT%T')}: queue job {name}\n")
        print(f"queue: {time.strftime('%FT%T')} start {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        with open(runs / f"{name}.log", "a") as log:
            log.write(f"# {time.strftime('%FT%T')} $ {command}\n")
            log.flush()
            code = subprocess.call(["bash", "-c", command], stdout=log, stderr=subprocess.STDOUT)
        Path(f"{lock_path}.who").write_text("")
    hours = (time.monotonic() - started) / 3600
    marker = runs / (f"{name}.done" if code == 0 else f"{name}.failed")
    marker.write_text(f"exit {code} after {hours:.2f} h at {time.strftime('%FT%T')}\n")
    print(f"queue: {time.strftime('%FT%T')} {name} exit {code} ({hours:.2f} h)", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", type=Path, help="file of 'NAME: command' lines")
    parser.add_argument("--runs", type=Path, help="folder for logs and markers (default: beside JOBS_FILE)")
    parser.add_argument("--wait", type=float, default=0.0, help="poll for new jobs every SECONDS (0: exit)")
    args = parser.parse_args(argv)
    runs = args.runs or args.jobs.parent
    runs.mkdir(parents=True, exist_ok=True)
    lock_path = os.environ.get("HEAVY_LOCK", "/tmp/heavy-job.lock")
    while True:
        job = next_job(read_jobs(args.jobs), runs)
        if job is None:
            if not args.wait:
                print("queue: no job left", file=sys.stderr)
                return 0
            time.sleep(args.wait)
            continue
        run_job(*job, runs, lock_path)


if __name__ == "__main__":
    raise SystemExit(main())
