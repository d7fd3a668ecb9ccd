"""Segmenting on Dask (engine.distributed): the same features as the single-process pipeline, in the same order,
with objects across the boundaries of tile groups run by different tasks; several rasters in one call; a worker
killed mid-run; cancel by SIGTERM / SIGINT; an unreachable scheduler."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import fiona
import psutil
import pytest
from shapely.geometry import shape

from engine.checkpoint import load_checkpoint
from engine.cli import main
from engine.distributed.cluster import dask_client, local_workers
from engine.distributed.segment import DaskOptions, segment_rasters_dask, tile_groups
from engine.distributed.work import ModelRef, model_loads
from engine.errors import UserError
from engine.inference.predictor import Predictor
from engine.inference.rasters import RasterJob
from engine.inference.segment import SegmentOptions, segment_raster
from engine.tiling import tile_grid
from tests.data.make_fixtures import write_scene_geotiff

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = [  # bright blocks across the tile (and tile group) boundaries of a 128/32 grid
    {"kind": "rect", "box": (80, 150, 150, 250), "class_id": 1},
    {"kind": "ellipse", "box": (200, 60, 300, 120), "class_id": 1},
    {"kind": "rect", "box": (10, 10, 40, 360), "class_id": 1},
]


def _features(path: Path) -> list[tuple[dict, dict]]:
    """(geometry, attributes) of every feature, in file order."""
    with fiona.open(path) as layer:
        return [(dict(f["geometry"].__geo_interface__), dict(f["properties"])) for f in layer]


class _Progress:
    def __init__(self) -> None:
        self.tiles, self.advances = None, []

    def started(self, tiles: int) -> None:
        self.tiles = tiles

    def advance(self, done: int, total: int) -> None:
        self.advances.append((done, total))

    def warning(self, text: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False


def _single(raster: Path, out: Path, checkpoint: Path, options: SegmentOptions = SegmentOptions()) -> list:
    segment_raster(raster, out, Predictor(load_checkpoint(checkpoint), "cpu"), options, model_label="m")
    return _features(out)


def test_tile_groups_stay_in_one_tile_row_and_cover_every_tile_once() -> None:
    tiles = tile_grid(300, 700, 128, 32)  # 3 rows of 7 tiles
    for size in (1, 2, 3, 7, 50):
        groups = tile_groups(tiles, size)
        assert [i for a, b in groups for i in range(a, b)] == list(range(len(tiles)))
        assert all(0 < b - a <= size and len({t.row_off for t in tiles[a:b]}) == 1 for a, b in groups)
    assert len(tile_groups(tiles, 3)) == 3 * 3  # 3 + 3 + 1 per row


@pytest.mark.parametrize("kind", ["instance", "semantic"])
def test_dask_writes_the_single_process_features(dask_cluster, tiny_instance, tiny_semantic, tmp_path, kind) -> None:
    checkpoint = tiny_instance if kind == "instance" else tiny_semantic
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, height=300, width=400, objects=OBJECTS)
    reference = _single(raster, tmp_path / "single.gpkg", checkpoint)

    progress = _Progress()
    out = tmp_path / "dask.gpkg"
    loads_before = dask_cluster.run(model_loads)
    run = segment_rasters_dask(dask_cluster, [RasterJob(str(raster), out)], ModelRef(str(checkpoint)),
                               load_checkpoint(checkpoint).spec, model_label="m", progress=progress,
                               dask=DaskOptions(group_tiles=2))
    assert _features(out) == reference and len(reference) > 20
    (result,) = run.results
    assert (result.features, result.tiles, result.tiles_run) == (len(reference), 12, 12)  # 3 rows x 4 tiles
    assert progress.tiles == 12 and progress.advances[-1] == (12, 12)
    assert [d for d, _ in progress.advances] == sorted(d for d, _ in progress.advances)
    assert run.stats.tasks == 6 and run.stats.tiles == 12 and run.stats.bytes_from_workers > 0
    loads = dask_cluster.run(model_loads)  # each worker loaded the model once for its 3 or so tasks
    new = [n - loads_before.get(worker, 0) for worker, n in loads.items()]
    assert max(new) == 1 and min(new) >= 0
    # features that joined views from two tasks: across the column boundary of the groups (tiles 0-1 | 2-3)
    # and across the row boundary
    tiles = tile_grid(300, 400, 128, 32)
    x_cut, y_cut = 500000 + tiles[2].core[1] * 10, 4000000 - tiles[4].core[0] * 10
    bounds = [shape(geom).bounds for geom, _ in reference]
    assert any(b[0] < x_cut < b[2] for b in bounds) and any(b[1] < y_cut < b[3] for b in bounds)


def test_several_rasters_in_one_call_on_a_running_scheduler(dask_cluster, tiny_instance, tmp_path) -> None:
    """`rsseg segment @list --dask tcp://...` and `rsseg segment 'folder/*.tif'` in this process: one file per
    raster, the same features."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_scene_geotiff(scenes / "north.tif", height=200, width=300, objects=OBJECTS[:1])
    write_scene_geotiff(scenes / "south.tif", height=256, width=256)
    listing = tmp_path / "rasters.txt"
    listing.write_text(f"# two scenes\n{scenes / 'north.tif'}\n\n{scenes / 'south.tif'}\n")
    common = ["--model", str(tiny_instance), "--threads", "1", "--progress", "none"]
    assert main(["segment", str(scenes / "*.tif"), "--out", str(tmp_path / "single"), *common]) == 0
    address = dask_cluster.scheduler.address
    assert main(["segment", f"@{listing}", "--out", str(tmp_path / "dask"), "--dask", address, *common]) == 0
    for name in ("north", "south"):
        assert _features(tmp_path / "dask" / f"{name}.gpkg") == _features(tmp_path / "single" / f"{name}.gpkg")
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == ["north.gpkg", "south.gpkg"]


def test_a_worker_killed_mid_run_changes_nothing(dask_cluster, tiny_instance, tmp_path) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, height=384, width=512, objects=OBJECTS)
    reference = _single(raster, tmp_path / "single.gpkg", tiny_instance)
    killed: list[tuple[int, int]] = []

    class KillOnFirstResult(_Progress):
        def advance(self, done: int, total: int) -> None:
            super().advance(done, total)
            if not killed:
                busy = [w for w, keys in dask_cluster.processing().items() if keys]
                pid = dask_cluster.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append((done, total))

    out = tmp_path / "dask.gpkg"
    run = segment_rasters_dask(dask_cluster, [RasterJob(str(raster), out)], ModelRef(str(tiny_instance)),
                               load_checkpoint(tiny_instance).spec, model_label="m", progress=KillOnFirstResult(),
                               dask=DaskOptions(group_tiles=1))
    assert killed and killed[0][0] < killed[0][1] == 20  # killed while tasks were still running
    assert _features(out) == reference
    assert run.stats.tasks == 20 and len(run.results) == 1
    dask_cluster.wait_for_workers(2, timeout=120)  # the nanny restarts it for the next tests


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cancel_writes_nothing_and_stops_the_workers(tiny_instance, tmp_path, signum) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, height=512, width=512, objects=OBJECTS)
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "out"
    out.mkdir()  # the output's folder exists; the cancelled run must leave it empty
    env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "segment", str(raster), "--model", str(tiny_instance),
                             "--out", str(out / "scene.gpkg"), "--dask", "local:2", "--progress", "jsonl"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "progress":
                break
        assert events[-1]["event"] == "progress" and events[-1]["done"] < events[-1]["total"], events
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the two worker processes (and multiprocessing helpers)
        proc.send_signal(signum)
        rest, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert json.loads(rest.splitlines()[-1])["event"] == "error"
    assert list(out.iterdir()) == [] and list(temp.iterdir()) == []
    deadline = time.monotonic() + 30
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_an_unreachable_scheduler_is_one_line_naming_it(tiny_instance, tmp_path, capsys) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    with socket.socket() as s, dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused, and no other process
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # (another test's cluster) can take the port meanwhile
        code = main(["segment", str(raster), "--model", str(tiny_instance), "--out", str(tmp_path / "o.gpkg"),
                     "--dask", address, "--progress", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and address in err[0] and "dask scheduler" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_dask_addresses(tmp_path) -> None:
    assert local_workers("local:3") == 3 and local_workers("tcp://10.0.0.1:8786") is None
    for bad in ("local:0", "local:two", "local", "example.org:8786"):
        with pytest.raises(UserError, match="local:N"), dask_client(bad):
            pass
    with pytest.raises(UserError, match="scheduler file not found"), dask_client(str(tmp_path / "sched.json")):
        pass
