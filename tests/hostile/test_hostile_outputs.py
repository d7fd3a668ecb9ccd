"""Outputs a user already has: a GeoPackage is a container whose other layers survive every run; a failed,
cancelled or refused run leaves every existing output byte for byte as it was, and no temporary file."""
from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from affine import Affine

import engine.vector.gpkg as gpkg_mod
import engine.vector.writer as writer_mod
from engine.inference.predictor import Predictor
from tests.data.make_fixtures import write_scene_geotiff
from tests.hostile.helpers import cli, layers, leftovers, snapshot, write_container


def _segment(capsys, raster: Path, model: Path, out: Path, *extra: object):
    return cli(capsys, "segment", raster, "--model", model, "--out", out, "--progress", "jsonl", *extra)


def test_existing_geopackage_keeps_its_other_layers(capsys, model: Path, raster: Path, work: Path) -> None:
    container = write_container(work / "project.gpkg")
    before = layers(container)
    run = _segment(capsys, raster, model, container)
    run.succeeded()
    done = run.events[-1]
    assert done["event"] == "done" and done["layer"] == "tiny_scene"
    after = layers(container)
    assert set(after) == {"roads", "fields", "tiny_scene"}
    assert {k: after[k] for k in before} == before
    assert len(after["tiny_scene"]) == done["features"]
    assert leftovers(work) == []


def test_rerun_replaces_only_its_own_layer_and_layer_picks_the_name(capsys, model: Path, raster: Path,
                                                                     work: Path) -> None:
    container = write_container(work / "project.gpkg")
    _segment(capsys, raster, model, container).succeeded()
    first = layers(container)
    _segment(capsys, raster, model, container).succeeded()  # same layer again: replaced, not appended
    assert layers(container) == first
    _segment(capsys, raster, model, container, "--layer", "ships_v2").succeeded()
    after = layers(container)
    assert set(after) == {"roads", "fields", "tiny_scene", "ships_v2"}
    assert after["ships_v2"] == first["tiny_scene"]


def test_layer_name_differing_only_in_case_is_the_same_layer(capsys, model: Path, raster: Path, work: Path) -> None:
    container = write_container(work / "project.gpkg")
    _segment(capsys, raster, model, container, "--layer", "ROADS").succeeded()
    assert set(layers(container)) == {"roads", "fields"}  # SQLite names ignore case: "roads" was replaced


def test_overwrite_replaces_the_whole_file_deliberately(capsys, model: Path, raster: Path, work: Path) -> None:
    container = write_container(work / "project.gpkg")
    _segment(capsys, raster, model, container, "--overwrite").succeeded()
    assert set(layers(container)) == {"tiny_scene"}


def test_tile_grid_into_an_existing_geopackage_adds_a_tiles_layer(capsys, model: Path, raster: Path,
                                                                  work: Path) -> None:
    container = write_container(work / "qa.gpkg")
    _segment(capsys, raster, model, work / "ships.geojson", "--tile-grid", container).succeeded()
    assert set(layers(container)) == {"roads", "fields", "tiles"}


def test_container_gets_a_crs_it_did_not_have(capsys, model: Path, raster: Path, work: Path) -> None:
    """A container whose only layer is in EPSG:4326 and whose srs_id 32633 means something else."""
    container = work / "geo.gpkg"
    with fiona.open(container, "w", driver="GPKG", layer="points", crs="EPSG:4326",
                    schema={"geometry": "Point", "properties": {}}) as dst:
        dst.write({"geometry": {"type": "Point", "coordinates": (10.0, 50.0)}, "properties": {}})
    with sqlite3.connect(container) as con:
        con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('other', 32633, 'EPSG', 32632, 'PROJCS[\"x\"]', '')")
    _segment(capsys, raster, model, container).succeeded()
    with fiona.open(container, layer="tiny_scene") as src:
        assert src.crs.to_epsg() == 32633 and len(src) >= 0
    with fiona.open(container, layer="points") as src:
        assert src.crs.to_epsg() == 4326 and len(src) == 1


@pytest.mark.parametrize("case", ["not_sqlite", "sqlite_not_gpkg", "write_protected", "raster_layer"])
def test_unusable_existing_output_is_refused_unchanged(capsys, model: Path, raster: Path, work: Path,
                                                       case: str) -> None:
    out = work / "o.gpkg"
    layer = []
    if case == "not_sqlite":
        out.write_text("my notes, not a GeoPackage")
    elif case == "sqlite_not_gpkg":
        with sqlite3.connect(out) as con:
            con.execute("CREATE TABLE t (x)")
    elif case == "write_protected":
        write_container(out)
        out.chmod(0o444)
    else:  # a GeoPackage raster whose table the layer name points at
        with rasterio.open(out, "w", driver="GPKG", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32633",
                           transform=Affine(1, 0, 0, 0, -1, 8), RASTER_TABLE="dem") as dst:
            dst.write(np.ones((1, 8, 8), np.uint8))
        layer = ["--layer", "dem"]
    before = snapshot(work)
    run = _segment(capsys, raster, model, out, *layer)
    needles = {"not_sqlite": ["not a GeoPackage", "--overwrite"], "sqlite_not_gpkg": ["not a GeoPackage"],
               "write_protected": ["write-protected", "chmod u+w"], "raster_layer": ["'dem' is a", "--layer"]}
    run.failed(str(out), *needles[case])
    assert snapshot(work) == before
    if case == "not_sqlite":  # what --overwrite is for
        _segment(capsys, raster, model, out, "--overwrite").succeeded()
        assert set(layers(out)) == {"tiny_scene"}


def test_output_equal_to_a_geopackage_raster_input_is_refused(capsys, model: Path, work: Path) -> None:
    raster = work / "scene.gpkg"
    with rasterio.open(raster, "w", driver="GPKG", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(np.full((1, 64, 64), 30, np.uint8))
    before = snapshot(work)
    _segment(capsys, raster, model, raster).failed("--out", "is also an input (raster")
    assert snapshot(work) == before


def _truncated_raster(path: Path) -> Path:
    """A 320 x 128 GeoTIFF cut after its first rows of blocks: the first tile reads, the second fails."""
    write_scene_geotiff(path, height=320, width=128, objects=[])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


def test_read_failure_in_the_middle_of_a_raster_keeps_the_container(capsys, model: Path, tmp_path: Path,
                                                                    work: Path) -> None:
    raster = _truncated_raster(tmp_path / "cut.tif")
    container = write_container(work / "project.gpkg")
    before = snapshot(work)
    run = _segment(capsys, raster, model, container)
    run.failed(str(raster), "read failed", "gdalinfo -checksum")
    assert run.events[0]["event"] == "start" and run.events[-1]["event"] == "error"  # failed inside the work
    assert snapshot(work) == before


def test_cancel_during_the_run_keeps_the_container(capsys, model: Path, raster: Path, work: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self, images):
        raise KeyboardInterrupt

    monkeypatch.setattr(Predictor, "predict", interrupted)
    container = write_container(work / "project.gpkg")
    before = snapshot(work)
    run = _segment(capsys, raster, model, container)
    run.failed("interrupted", code=130)
    assert run.events[-1] == {"event": "error", "message": "interrupted"}
    assert snapshot(work) == before


@pytest.mark.parametrize("where", ["streaming", "into_container", "final_rename"])
def test_disk_full_is_one_line_and_keeps_what_exists(capsys, model: Path, raster: Path, work: Path,
                                                     monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "streaming":  # GDAL's own words for it, as fiona raises them
        def write(self, record):
            raise fiona.errors.DriverIOError("sqlite3_step() failed: database or disk is full")

        out = write_container(work / "project.gpkg")
        monkeypatch.setattr(fiona.Collection, "write", write)
    elif where == "into_container":
        def copy_rows(*args):
            raise sqlite3.OperationalError("database or disk is full")

        out = write_container(work / "project.gpkg")
        monkeypatch.setattr(gpkg_mod, "_copy_rows", copy_rows)
    else:
        def replace(src, dst):
            raise full

        monkeypatch.setattr(writer_mod.os, "replace", replace)
        out = work / "ships.geojson"
        out.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    before = snapshot(work)
    run = _segment(capsys, raster, model, out)
    run.failed(str(out), "free disk space")
    assert snapshot(work) == before


def test_permission_denied_at_the_end_is_one_line(capsys, model: Path, raster: Path, work: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(writer_mod.os, "replace", replace)
    run = _segment(capsys, raster, model, work / "o.gpkg")
    run.failed("o.gpkg", "Permission denied", "permissions")
    assert snapshot(work) == {}


def test_another_program_writing_to_the_container_is_waited_for_then_named(capsys, model: Path, raster: Path,
                                                                           work: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpkg_mod, "_BUSY_TIMEOUT_S", 0.2)
    container = write_container(work / "project.gpkg")
    before = layers(container)
    other = sqlite3.connect(container, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # QGIS in the middle of saving edits
        run = _segment(capsys, raster, model, container)
        run.failed(str(container), "another program is writing", "run again")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert layers(container) == before
    assert leftovers(work) == []


def test_work_folder_of_a_killed_run_is_removed_and_reported(capsys, model: Path, raster: Path, work: Path) -> None:
    """A .partial folder whose process is gone (what SIGKILL leaves) is removed by the next run writing the same
    output; one from an older rsseg (no owner) is reported; another output's is left alone."""
    out = work / "o.gpkg"
    dead = work / ".rsseg-999999999-deadbeef.partial"
    dead.mkdir()
    (dead / "new.gpkg").write_bytes(b"half")
    (dead / "rsseg-partial.json").write_text(json.dumps({"pid": 999999999, "host": os.uname().nodename,
                                                          "output": "o.gpkg"}))
    other = work / ".rsseg-999999998-cafecafe.partial"
    other.mkdir()
    (other / "rsseg-partial.json").write_text(json.dumps({"pid": 999999998, "host": os.uname().nodename,
                                                           "output": "elsewhere.gpkg"}))
    legacy = work / ".o.gpkg.0123abcd.partial"
    legacy.mkdir()
    run = _segment(capsys, raster, model, out)
    run.succeeded()
    warnings = [e["message"] for e in run.events if e["event"] == "warning"]
    assert any("removed" in w and dead.name in w for w in warnings), warnings
    assert any(legacy.name in w and "delete it" in w for w in warnings), warnings
    assert not dead.exists() and other.exists() and legacy.exists()


def test_internal_bug_is_a_traceback_with_a_report_line(capsys, model: Path, raster: Path, work: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one case a traceback is right: a bug. Exit 1, the traceback, then one line asking for a report."""
    def broken(self, images):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(Predictor, "predict", broken)
    container = write_container(work / "project.gpkg")
    before = snapshot(work)
    run = _segment(capsys, raster, model, container)
    assert run.code == 1 and "Traceback" in run.err
    last = run.err.strip().splitlines()[-1]
    assert last.startswith("error: internal error (TypeError") and "please report it" in last
    assert run.events[-1]["event"] == "error" and snapshot(work) == before
