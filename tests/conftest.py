"""Shared pytest fixtures: tiny generated rasters and COCO datasets (written into tmp dirs); and the clean-up of
the temporary folder the test process's QGIS application makes."""

import shutil
from pathlib import Path

import pytest

from tests.data.make_fixtures import write_coco_dataset, write_scene_geotiff

QGIS_TEMP = pytest.StashKey[Path | None]()


def _qgis_temp_folder() -> Path | None:
    """The $TMPDIR/QGIS3-XXXXXX folder of this process's QgsApplication (made by its source cache, which is never
    destroyed, so the folder outlives the process). Found by asking the cache for a one-byte file; None without
    an application (pytest-xdist's controller)."""
    from qgis.core import QgsApplication

    if QgsApplication.instance() is None:
        return None
    path = QgsApplication.sourceCache().localFilePath("base64:AA==")
    folder = Path(path).parent if path else None
    return folder if folder and folder.name.startswith(f"{QgsApplication.QGIS_APPLICATION_NAME}-") else None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[QGIS_TEMP] = _qgis_temp_folder()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the QGIS temporary folder once the session (and QGIS) is done."""
    folder = config.stash.get(QGIS_TEMP, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


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
