"""segment --aoi / --exclude (engine.inference.area_masks) with the oracle predictors of test_segment and
test_semantic_segment: features dropped by their representative point, the rest as an unmasked run writes them;
tiles outside the AOI or inside the exclude polygons never run (QA grid status); an AOI in another CRS; the Dask
path (an in-process cluster) writes what the single-process path writes; one-line user errors."""
from __future__ import annotations

import json
from pathlib import Path

import fiona
import pytest
from fiona.crs import CRS as FionaCRS
from rasterio.warp import transform_geom
from shapely.geometry import Point, box, mapping, shape
from shapely.ops import unary_union

from engine.cli import main
from engine.errors import UserError
from engine.inference.segment import SegmentOptions, segment_raster
from tests.data.make_fixtures import write_scene_geotiff
from tests.engine.recording_progress import RecordingProgress
from tests.engine.test_segment import OraclePredictor
from tests.engine.test_semantic_segment import OracleSemanticPredictor

TILES = SegmentOptions(tile_size=64, overlap=16)  # windows start at 0, 48, 96, 144, 192 on both axes


def _map_box(row0: int, col0: int, row1: int, col1: int):
    """A pixel box of the fixture scene (10 m pixels from (500000, 4000000), EPSG:32633) in map coordinates."""
    return box(500000 + col0 * 10, 4000000 - row1 * 10, 500000 + col1 * 10, 4000000 - row0 * 10)


# the bottom-left ellipse (rows 200-220, cols 40-60) lies inside; the top of the rect at rows 180-240, cols
# 190-200 too, but not its representative point. Tiles at rows 192-256 and cols 0-64, 48-112: wholly inside.
EXCLUDE = [_map_box(160, 0, 256, 128), _map_box(175, 180, 190, 210)]
# the top-left rect (rows 20-36, cols 30-70) and the bottom-right one (rows 180-240, cols 190-200)
AOI = [_map_box(0, 0, 64, 128), _map_box(176, 176, 256, 256)]


def _write(path: Path, geometries: list, crs: str = "EPSG:32633", kind: str = "Polygon") -> str:
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".shp": "ESRI Shapefile"}[path.suffix]
    schema = {"geometry": kind, "properties": {"name": "str"}}
    with fiona.open(path, "w", driver=driver, schema=schema, crs=FionaCRS.from_user_input(crs)) as dst:
        for g in geometries:
            dst.write({"geometry": mapping(g), "properties": {"name": "area"}})
    return str(path)


def _features(path: Path) -> list[tuple[object, dict]]:
    with fiona.open(path) as layer:
        return [(shape(f["geometry"]), dict(f["properties"])) for f in layer]


def _statuses(path: Path) -> dict[tuple[int, int], str]:
    with fiona.open(path) as layer:
        return {(f["properties"]["row_off"], f["properties"]["col_off"]): f["properties"]["status"] for f in layer}


def _inside(features: list, polygons: list) -> list:
    area = unary_union(polygons)
    return [f for f in features if area.intersects(f[0].representative_point())]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    return raster


def test_exclude_drops_by_representative_point_and_keeps_the_rest_as_they_were(scene: Path, tmp_path: Path) -> None:
    full = _features(Path(segment_raster(scene, tmp_path / "all.gpkg", OraclePredictor(), TILES).output))
    land = _write(tmp_path / "land.gpkg", EXCLUDE)
    oracle, grid = OraclePredictor(), tmp_path / "tiles.gpkg"
    result = segment_raster(scene, tmp_path / "sea.gpkg", oracle,
                            SegmentOptions(tile_size=64, overlap=16, exclude=land, tile_grid=str(grid)))
    kept = _features(tmp_path / "sea.gpkg")
    dropped = _inside(full, EXCLUDE)
    assert len(full) == 4 and len(dropped) == 1 and result.features == len(kept) == 3
    assert [(g.wkb, p) for g, p in kept] == [(g.wkb, p) for g, p in full if (g, p) not in dropped]
    assert any(g.intersects(EXCLUDE[1]) for g, _ in kept)  # touching the exclude polygons is not enough
    statuses = _statuses(grid)  # tile row 3, cols 0 and 64: wholly inside, never run
    assert sorted(k for k, s in statuses.items() if s == "excluded") == [(192, 0), (192, 48)]
    assert list(statuses.values()).count("run") == 23 == oracle.tiles_seen == result.tiles_run
    assert result.tiles == 25


def test_aoi_keeps_only_what_lies_inside(scene: Path, tmp_path: Path) -> None:
    full = _features(Path(segment_raster(scene, tmp_path / "all.gpkg", OraclePredictor(), TILES).output))
    aoi, grid = _write(tmp_path / "harbour.shp", AOI), tmp_path / "tiles.geojson"
    oracle = OraclePredictor()
    segment_raster(scene, tmp_path / "in.gpkg", oracle,
                   SegmentOptions(tile_size=64, overlap=16, aoi=aoi, tile_grid=str(grid)))
    expected = _inside(full, AOI)
    assert len(expected) == 2 and [(g.wkb, p) for g, p in _features(tmp_path / "in.gpkg")] == \
        [(g.wkb, p) for g, p in expected]
    statuses = _statuses(grid)
    run = sorted(k for k, s in statuses.items() if s == "run")
    assert run == [(r, c) for r in (0, 48) for c in (0, 48, 96)] + [(r, c) for r in (144, 192) for c in (144, 192)]
    assert oracle.tiles_seen == 10 and list(statuses.values()).count("outside_aoi") == 15


def test_aoi_bounds_are_the_area_to_segment(scene: Path, tmp_path: Path) -> None:
    aoi = _write(tmp_path / "aoi.geojson", [_map_box(0, 0, 64, 128)])
    oracle = OraclePredictor()
    result = segment_raster(scene, tmp_path / "o.gpkg", oracle, SegmentOptions(aoi=aoi))  # the model's 128-px tiles
    assert result.tiles == oracle.tiles_seen == 1 and result.features == 1  # as --extent over those bounds


def test_aoi_in_another_crs(scene: Path, tmp_path: Path) -> None:
    utm = _features(Path(segment_raster(scene, tmp_path / "utm.gpkg", OraclePredictor(),
                                        SegmentOptions(tile_size=64, overlap=16,
                                                       aoi=_write(tmp_path / "utm_aoi.gpkg", AOI))).output))
    lonlat = [shape(transform_geom("EPSG:32633", "EPSG:4326", mapping(g))) for g in AOI]
    assert all(-180 <= x <= 180 for g in lonlat for x in g.bounds[::2])
    out = tmp_path / "wgs84.gpkg"
    wgs84 = _write(tmp_path / "wgs84.geojson", lonlat, "EPSG:4326")
    segment_raster(scene, out, OraclePredictor(), SegmentOptions(tile_size=64, overlap=16, aoi=wgs84))
    assert len(utm) == 2 and [(g.wkb, p) for g, p in _features(out)] == [(g.wkb, p) for g, p in utm]


def test_semantic_regions_follow_the_same_rule(scene: Path, tmp_path: Path) -> None:
    full = _features(Path(segment_raster(scene, tmp_path / "all.gpkg", OracleSemanticPredictor(), TILES).output))
    predictor, grid = OracleSemanticPredictor(), tmp_path / "tiles.gpkg"
    segment_raster(scene, tmp_path / "sea.gpkg", predictor,
                   SegmentOptions(tile_size=64, overlap=16, exclude=_write(tmp_path / "land.gpkg", EXCLUDE),
                                  tile_grid=str(grid)))
    dropped = _inside(full, EXCLUDE)
    assert len(full) == 4 and len(dropped) == 1 and predictor.tiles_seen == 23
    assert [(g.wkb, p) for g, p in _features(tmp_path / "sea.gpkg")] == \
        [(g.wkb, p) for g, p in full if (g, p) not in dropped]
    assert list(_statuses(grid).values()).count("excluded") == 2


def test_exclude_over_everything_writes_an_empty_layer_with_a_warning(scene: Path, tmp_path: Path) -> None:
    oracle, progress = OraclePredictor(), RecordingProgress()
    everything = _write(tmp_path / "all.gpkg", [_map_box(-10, -10, 300, 300)])
    result = segment_raster(scene, tmp_path / "o.gpkg", oracle, SegmentOptions(exclude=everything), progress=progress)
    assert result.features == 0 and oracle.tiles_seen == 0 and progress.advances[-1] == (9, 9)
    assert any("--exclude covers every tile" in w for w in progress.warnings)


def _error(scene: Path, out: Path, **masks) -> str:
    with pytest.raises(UserError) as raised:
        segment_raster(scene, out, OraclePredictor(), SegmentOptions(**masks))
    assert not out.exists()
    text = str(raised.value)
    assert "\n" not in text
    return text


def test_user_errors_name_the_input_and_the_fix(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.gpkg"
    assert _error(scene, out, aoi=str(tmp_path / "nope.gpkg")).startswith(f"--aoi '{tmp_path / 'nope.gpkg'}': "
                                                                          "file not found; give the path")
    points = _write(tmp_path / "ports.geojson", [Point(500100, 3999900)], kind="Point")
    assert _error(scene, out, exclude=points) == (f"--exclude '{points}': holds no polygons (1 not a polygon); give "
                                                  "a polygon layer of the area")
    empty = _write(tmp_path / "empty.gpkg", [])
    assert "holds no polygons (the layer is empty)" in _error(scene, out, aoi=empty)
    far = _write(tmp_path / "far.gpkg", [box(600000, 3000000, 601000, 3001000)])
    assert _error(scene, out, aoi=far) == (f"--aoi '{far}': does not overlap raster '{scene}'; check that the layer "
                                           "covers the raster (and its CRS)")
    with pytest.raises(UserError, match=r"--aoi '.*aoi.gpkg': does not overlap the area to segment .*--extent"):
        segment_raster(scene, out, OraclePredictor(), SegmentOptions(
            aoi=_write(tmp_path / "aoi.gpkg", [_map_box(0, 0, 64, 64)]), extent=_map_box(128, 128, 256, 256).bounds))
    land = _write(tmp_path / "land.gpkg", EXCLUDE)
    with pytest.raises(UserError) as raised:  # a layer of the file is the file
        segment_raster(scene, land, OraclePredictor(), SegmentOptions(exclude=land + "|layername=land"))
    assert str(raised.value) == (f"--out '{land}': is also an input (--exclude '{land}'), which writing would "
                                 "destroy; give --out another file")
    assert len(_features(Path(land))) == 2


def test_cli_checks_masks_first_and_reports_them_in_the_start_event(scene: Path, tmp_path: Path, tiny_checkpoint: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    aoi = _write(tmp_path / "aoi.gpkg", AOI)
    code = main(["segment", str(scene), "--model", "not-loaded", "--out", aoi, "--aoi", aoi])
    assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --out '{aoi}': is also an input (--aoi '{aoi}'), which writing would destroy; give --out another "
        "file")
    code = main(["segment", str(scene), "--model", "not-loaded", "--out", str(tmp_path / "o.gpkg"), "--exclude",
                 str(tmp_path / "land.shp")])
    assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --exclude '{tmp_path / 'land.shp'}': polygon layer not found; check the path")
    land = _write(tmp_path / "land.gpkg", EXCLUDE)
    code = main(["segment", str(scene), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o.gpkg"),
                 "--aoi", aoi, "--exclude", land, "--progress", "jsonl"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    start = json.loads(printed.out.splitlines()[0])
    assert start["event"] == "start" and start["aoi"] == aoi and start["exclude"] == land


class _DaskOracle(OraclePredictor):
    """The oracle as a Dask worker's predictor (run_group asks it for its task)."""

    @property
    def task(self):
        from engine.tasks import task_of

        return task_of(self.spec)


def test_dask_path_applies_the_same_masks(scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from distributed import Client

    from engine.distributed import work
    from engine.distributed.segment import segment_rasters_dask
    from engine.inference.rasters import RasterJob
    from tests.engine.test_segment import SPEC

    options = SegmentOptions(tile_size=64, overlap=16, exclude=_write(tmp_path / "x.gpkg", [_map_box(0, 0, 64, 64)]),
                             aoi=_write(tmp_path / "aoi.gpkg", [*AOI, _map_box(96, 96, 160, 160)]),
                             tile_grid=str(tmp_path / "single_tiles.gpkg"))
    single = segment_raster(scene, tmp_path / "single.gpkg", OraclePredictor(), options, model_label="m")
    monkeypatch.setattr(work, "load_predictor", lambda ref: _DaskOracle())  # in-process workers: threads
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        run = segment_rasters_dask(client, [RasterJob(str(scene), tmp_path / "dask.gpkg")], work.ModelRef("oracle"),
                                   SPEC, replace(options, tile_grid=str(tmp_path / "dask_tiles.gpkg")), model_label="m")
    assert run.results[0].features == single.features == 2 and run.results[0].tiles_run == single.tiles_run
    assert [(g.wkb, p) for g, p in _features(tmp_path / "dask.gpkg")] == \
        [(g.wkb, p) for g, p in _features(tmp_path / "single.gpkg")]
    statuses = _statuses(tmp_path / "dask_tiles.gpkg")
    assert statuses == _statuses(tmp_path / "single_tiles.gpkg") and statuses[(0, 0)] == "excluded"
