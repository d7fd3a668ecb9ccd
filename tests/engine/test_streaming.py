"""Streaming seam merging: same objects as merging everything at once, with bounded pending instances."""
from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pytest

from engine.inference.segment import SegmentOptions, segment_raster
from engine.merge import Instance, StreamingMerger, merge_seam_duplicates
from engine.tiling import tile_grid
from tests.data.make_fixtures import write_scene_geotiff
from tests.engine.recording_progress import RecordingProgress
from tests.engine.test_segment import OraclePredictor


def _tile_views(label_image: np.ndarray, classes: dict[int, int], tile: int, overlap: int):
    """Per tile (row-major), one Instance per object label visible in the tile window."""
    h, w = label_image.shape
    for t in tile_grid(h, w, tile, overlap):
        window = label_image[t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width]
        views = []
        for obj in np.unique(window[window > 0]):
            m = window == obj
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            views.append(Instance(classes[int(obj)], 0.5 + 0.01 * int(obj),
                                  m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy(),
                                  t.row_off + int(rows[0]), t.col_off + int(cols[0]),
                                  window=(t.row_off, t.col_off, t.row_off + t.height, t.col_off + t.width)))
        yield t, views


def _signature(instances: list[Instance]) -> list[tuple]:
    return sorted((i.class_id, i.bbox, i.area, i.n_tiles, round(i.score, 6)) for i in instances)


@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_merging_everything_at_once(seed: int) -> None:
    rs = np.random.RandomState(seed)
    h, w, tile, overlap = int(rs.randint(150, 400)), int(rs.randint(150, 400)), 64, int(rs.choice([0, 16, 24]))
    labels = np.zeros((h, w), np.int32)
    classes = {}
    for obj in range(1, 25):
        r, c = rs.randint(0, h - 10), rs.randint(0, w - 10)
        labels[r:r + rs.randint(3, 60), c:c + rs.randint(3, 60)] = obj  # rectangles, later ones on top
        classes[obj] = int(rs.randint(1, 3))
    views = list(_tile_views(labels, classes, tile, overlap))
    everything = merge_seam_duplicates([v for _, vs in views for v in vs])

    merger = StreamingMerger()
    streamed: list[Instance] = []
    tiles = [t for t, _ in views]
    for k, (_, vs) in enumerate(views):
        merger.add(vs)
        frontier = min(t.row_off for t in tiles[k + 1:]) if k + 1 < len(tiles) else None
        streamed.extend(merger.flush(frontier))
    assert merger.pending == []
    assert _signature(streamed) == _signature(everything)


def test_segment_raster_writes_as_it_goes_with_bounded_memory(tmp_path: Path) -> None:
    """A tall raster with objects all the way down: far fewer instances are ever held than exist."""
    objects = [{"kind": "rect", "box": (r, c, r + 20, c + 30), "class_id": 1}
               for r in range(8, 1000, 60) for c in (10, 70, 140)]
    raster = tmp_path / "tall.tif"
    write_scene_geotiff(raster, height=1024, width=192, objects=objects)
    out = tmp_path / "out.gpkg"
    result = segment_raster(raster, out, OraclePredictor(), SegmentOptions(batch_size=2))
    assert result.features == len(objects)
    assert result.peak_pending < len(objects) / 3  # merging everything at the end would hold >= all of them
    with fiona.open(out) as layer:
        assert len(layer) == len(objects)


def test_tile_grid_qa_layer(tmp_path: Path) -> None:
    """One polygon per tile in the raster's CRS, nodata tiles marked, predictions counted per tile."""
    import rasterio
    from shapely.geometry import box, shape
    from shapely.ops import unary_union

    raster = tmp_path / "nodata.tif"
    write_scene_geotiff(raster, width=512, nodata=0)  # left 64 columns are nodata
    grid = tmp_path / "tiles.gpkg"
    result = segment_raster(raster, tmp_path / "a.gpkg", OraclePredictor(),
                            SegmentOptions(tile_size=64, overlap=0, tile_grid=str(grid)))
    with fiona.open(grid) as layer:
        feats = list(layer)
        assert layer.crs.to_epsg() == 32633
    assert len(feats) == result.tiles
    status = [f["properties"]["status"] for f in feats]
    assert status.count("nodata") == 256 // 64 and status.count("run") == result.tiles - 4
    assert all(f["properties"]["col_off"] == 0 for f in feats if f["properties"]["status"] == "nodata")
    assert sum(f["properties"]["n_predictions"] for f in feats) >= result.features > 0
    with rasterio.open(raster) as src:
        bounds = box(*src.bounds)
    assert unary_union([shape(f["geometry"]) for f in feats]).symmetric_difference(bounds).area < 1e-6


def test_cancelled_run_writes_no_tile_grid(tmp_path: Path) -> None:
    from engine.errors import Cancelled

    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    with pytest.raises(Cancelled):
        segment_raster(raster, tmp_path / "out.gpkg", OraclePredictor(),
                       SegmentOptions(tile_grid=str(tmp_path / "tiles.gpkg")),
                       progress=RecordingProgress(cancel_when=lambda p: p.polls > 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
