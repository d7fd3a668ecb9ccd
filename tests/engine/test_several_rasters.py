"""Several rasters in one segment call (engine.inference.rasters): paths, globs and @list files; one output per
raster in a folder; the single-process loop with one progress count; GDAL URIs taken as they are."""
from __future__ import annotations

from pathlib import Path

import fiona
import pytest

from engine.errors import UserError
from engine.inference.rasters import (
    RasterJob,
    expand_rasters,
    plan_jobs,
    raster_name,
    segment_rasters,
)
from engine.inference.segment import segment_raster
from engine.raster.source import RasterSource, is_gdal_uri
from engine.vector.writer import default_layer_name
from tests.data.make_fixtures import write_scene_geotiff
from tests.engine.recording_progress import RecordingProgress
from tests.engine.test_segment import OraclePredictor


def test_expand_rasters_paths_globs_and_list_files(tmp_path: Path) -> None:
    for name in ("b.tif", "a.tif", "c.jp2"):
        (tmp_path / name).touch()
    listing = tmp_path / "list.txt"
    listing.write_text(f"# scenes\n{tmp_path / 'c.jp2'}\n\n  /vsis3/bucket/key.tif  \n{tmp_path / 'a.tif'}\n")
    found = expand_rasters([str(tmp_path / "*.tif"), f"@{listing}", "https://host/x.tif"])
    assert found == [str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), str(tmp_path / "c.jp2"),
                     "/vsis3/bucket/key.tif", "https://host/x.tif"]  # in order, each once
    with pytest.raises(UserError, match=r"raster pattern '.*\*\.png': matches no file"):
        expand_rasters([str(tmp_path / "*.png")])
    with pytest.raises(UserError, match=r"raster list '.*missing.txt': cannot be read"):
        expand_rasters([f"@{tmp_path / 'missing.txt'}"])
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(UserError, match="holds no raster"):
        expand_rasters([f"@{tmp_path / 'empty.txt'}"])


def test_gdal_uris_and_output_names() -> None:
    for uri in ("/vsis3/bucket/a.tif", "https://host/dir/a.tif?token=1", 'NETCDF:"x.nc":band'):
        assert is_gdal_uri(uri)
    for path in ("/data/a.tif", "a.tif", "C:/data/a.tif", "C:\\data\\a.tif"):
        assert not is_gdal_uri(path)
    assert [raster_name(r) for r in ("/data/s1.tif", "/vsis3/b/k/s2.tif", "https://h/d/s3.tif?x=1")] == \
        ["s1", "s2", "s3"]
    with pytest.raises(UserError, match=r"raster '/vsimem/missing.tif': not a readable raster"):
        RasterSource("/vsimem/missing.tif")  # a URI is not checked as a local path; GDAL says what is wrong


def test_plan_jobs_one_file_or_a_folder(tmp_path: Path) -> None:
    assert plan_jobs(["a.tif"], tmp_path / "a.gpkg") == [RasterJob("a.tif", tmp_path / "a.gpkg")]
    assert plan_jobs(["d/a.tif"], tmp_path) == [RasterJob("d/a.tif", tmp_path / "a.gpkg")]  # an existing folder
    assert plan_jobs(["x/a.tif", "/vsis3/b/b.tif"], tmp_path / "new") == [
        RasterJob("x/a.tif", tmp_path / "new" / "a.gpkg"), RasterJob("/vsis3/b/b.tif", tmp_path / "new" / "b.gpkg")]
    with pytest.raises(UserError, match=r"--out .*out.gpkg: 2 rasters need a folder"):
        plan_jobs(["a.tif", "b.tif"], tmp_path / "out.gpkg")
    with pytest.raises(UserError, match=r"rasters 'x/a.tif' and 'y/a.tif' would both be written to .*a.gpkg"):
        plan_jobs(["x/a.tif", "y/a.tif"], tmp_path / "out")


def test_segment_rasters_one_output_each_and_one_progress_count(tmp_path: Path) -> None:
    rasters = [tmp_path / "a.tif", tmp_path / "b.tif"]
    write_scene_geotiff(rasters[0])
    write_scene_geotiff(rasters[1], height=128, width=384, objects=[{"kind": "rect", "box": (20, 20, 40, 60),
                                                                     "class_id": 1}])
    jobs = plan_jobs([str(r) for r in rasters], tmp_path / "out")
    (tmp_path / "out").mkdir()
    progress = RecordingProgress()
    results = segment_rasters(jobs, OraclePredictor(), model_label="oracle", progress=progress)
    assert progress.tiles == 9 + 4 and progress.advances[-1] == (13, 13)
    assert [d for d, _ in progress.advances] == sorted(d for d, _ in progress.advances)
    assert [r.tiles for r in results] == [9, 4] and [r.features for r in results] == [4, 1]
    for raster, job in zip(rasters, jobs):
        alone = segment_raster(raster, tmp_path / f"{raster.stem}-alone.gpkg", OraclePredictor(), model_label="oracle")
        with fiona.open(job.out) as layer, fiona.open(alone.output) as reference:
            assert layer.name == default_layer_name("oracle", raster)  # MODEL_RASTER, as for one output
            assert [dict(f["properties"]) for f in layer] == [dict(f["properties"]) for f in reference]
