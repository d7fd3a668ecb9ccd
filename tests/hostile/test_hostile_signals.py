"""What only a real process shows: SIGHUP is a cancel like SIGTERM; SIGKILL leaves a work folder that the next
run removes and reports, and the container as it was; a file-size limit (the disk filling up) is one line."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.data.make_fixtures import write_scene_geotiff
from tests.hostile.helpers import cli, layers, leftovers, write_container

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and resource limits")


def _engine(args: list[object], preexec=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=preexec)


def _segment_until_progress(raster: Path, model: Path, out: Path) -> subprocess.Popen:
    """Start a segment run and return once it reports its first finished batch."""
    proc = _engine(["segment", raster, "--model", model, "--out", out, "--progress", "jsonl", "--threads", "1"])
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "progress":
                break
    finally:
        watchdog.cancel()
    assert proc.poll() is None, "finished before the signal"
    return proc


@pytest.fixture
def big_raster(tmp_path: Path) -> Path:
    path = tmp_path / "big.tif"
    write_scene_geotiff(path, height=512, width=512)  # 25 tiles: seconds of work
    return path


def test_sighup_cancels_like_sigterm(model: Path, big_raster: Path, work: Path) -> None:
    container = write_container(work / "project.gpkg")
    before = layers(container)
    proc = _segment_until_progress(big_raster, model, container)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: cancelled" and "Traceback" not in err
    assert json.loads(out.strip().splitlines()[-1]) == {"event": "error", "message": "cancelled"}
    assert layers(container) == before and leftovers(work) == []


def test_sigkill_leftovers_are_removed_and_reported_by_the_next_run(capsys, model: Path, big_raster: Path,
                                                                    raster: Path, work: Path) -> None:
    container = write_container(work / "project.gpkg")
    before = container.read_bytes()
    proc = _segment_until_progress(big_raster, model, container)
    proc.kill()
    proc.communicate(timeout=60)
    left = [p for p in work.iterdir() if p.name.endswith(".partial")]
    assert len(left) == 1 and container.read_bytes() == before  # the container was never written in place
    run = cli(capsys, "segment", raster, "--model", model, "--out", container, "--progress", "jsonl")
    run.succeeded()
    warnings = [e["message"] for e in run.events if e["event"] == "warning"]
    assert any("removed" in w and left[0].name in w and "killed" in w for w in warnings), warnings
    assert leftovers(work) == [] and set(layers(container)) == {"roads", "fields", "tiny_scene"}


def test_file_size_limit_is_one_line_and_keeps_the_old_output(model: Path, raster: Path, work: Path) -> None:
    """RLIMIT_FSIZE makes every write past 64 KiB fail like a full disk (EFBIG): exit 2, one line, the existing
    GeoJSON untouched, no temporary file."""
    out = work / "ships.geojson"
    out.write_text('{"type": "FeatureCollection", "features": []}')

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = _engine(["segment", raster, "--model", model, "--out", work / "ships.gpkg", "--progress", "none",
                    "--threads", "1"], preexec=limit)
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("error:") and "ships.gpkg" in lines[-1] and "ulimit" in lines[-1], lines[-1]
    assert out.read_text() == '{"type": "FeatureCollection", "features": []}'
    assert sorted(p.name for p in work.iterdir()) == ["ships.geojson"]
