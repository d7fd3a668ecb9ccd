"""Shared pytest fixtures: tiny generated rasters and COCO datasets (written into tmp dirs)."""

from pathlib import Path

import pytest

from tests.data.make_fixtures import write_coco_dataset, write_scene_geotiff


@pytest.fixture
def scene_tif(tmp_path: Path) -> tuple[Path, list[dict]]:
    """256 x 256 single-band uint8 GeoTIFF in EPSG:32633 (10 m) and its known objects."""
    path = tmp_path / "scene.tif"
    return path, write_scene_geotiff(path)


@pytest.fixture
def coco_gray(tmp_path: Path) -> Path:
    """4 single-band PNGs + annotations.json, one class ("ship"); returns the json path."""
    return write_coco_dataset(tmp_path / "coco_gray", class_names=("ship",))


@pytest.fixture
def coco_rgb(tmp_path: Path) -> Path:
    """4 RGB PNGs + annotations.json, classes ("ship", "tank"); returns the json path."""
    return write_coco_dataset(tmp_path / "coco_rgb", bands=3)
