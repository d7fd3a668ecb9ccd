"""research.queue: jobs run one at a time in file order under the heavy-job lock, each with its log and
a .done / .failed marker; finished jobs are not run again; jobs appended later are picked up."""
from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from research.queue import main as queue
from research.queue import next_job, read_jobs


@pytest.fixture
def lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private heavy-job lock file for the queue under test."""
    path = tmp_path / "heavy.lock"
    monkeypatch.setenv("HEAVY_LOCK", str(path))
    return path


def test_jobs_file_is_parsed_in_order_and_bad_lines_name_their_line(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("# campaign\n\nfirst: echo 1\n  second :  echo 2 && echo 3\nfirst: echo again\n")
    assert read_jobs(jobs) == [("first", "echo 1"), ("second", "echo 2 && echo 3")]
    jobs.write_text("fine: true\nno colon here\n")
    with pytest.raises(SystemExit, match=r"jobs.txt:2: expected 'NAME: command'"):
        read_jobs(jobs)


def test_next_job_skips_done_and_failed_jobs(tmp_path: Path) -> None:
    jobs = [("a", "true"), ("b", "true"), ("c", "true")]
    assert next_job(jobs, tmp_path) == ("a", "true")
    (tmp_path / "a.done").write_text("exit 0\n")
    (tmp_path / "b.failed").write_text("exit 1\n")
    assert next_job(jobs, tmp_path) == ("c", "true")
    (tmp_path / "c.done").write_text("exit 0\n")
    assert next_job(jobs, tmp_path) is None


def test_queue_runs_every_job_once_with_logs_and_markers(tmp_path: Path, lock: Path) -> None:
    jobs, runs = tmp_path / "jobs.txt", tmp_path / "runs"
    jobs.write_text("ok: echo hello\nbad: echo oops >&2; exit 3\n")
    assert queue([str(jobs), "--runs", str(runs)]) == 0
    assert (runs / "ok.done").read_text().startswith("exit 0 ")
    assert (runs / "bad.failed").read_text().startswith("exit 3 ")
    assert not (runs / "ok.failed").exists() and not (runs / "bad.done").exists()
    ok_log = (runs / "ok.log").read_text().splitlines()
    assert ok_log[0].endswith("$ echo hello") and ok_log[1:] == ["hello"]
    assert "oops" in (runs / "bad.log").read_text()
    # a second start runs nothing again; a job appended to the file runs alone
    jobs.write_text(jobs.read_text() + "later: echo late\n")
    assert queue([str(jobs), "--runs", str(runs)]) == 0
    assert len((runs / "ok.log").read_text().splitlines()) == 2
    assert (runs / "later.done").is_file() and (runs / "later.log").read_text().endswith("late\n")
    assert lock.with_name("heavy.lock.who").read_text() == ""  # released: nobody holds the lock


def test_queue_waits_for_the_heavy_job_lock(tmp_path: Path, lock: Path) -> None:
    jobs, runs = tmp_path / "jobs.txt", tmp_path / "runs"
    jobs.write_text("job: echo ran\n")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=queue, args=([str(jobs), "--runs", str(runs)],))
        worker.start()
        time.sleep(0.5)
        assert not (runs / "job.log").exists()  # still waiting for the lock
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert (runs / "job.done").is_file() and (runs / "job.log").read_text().endswith("ran\n")
