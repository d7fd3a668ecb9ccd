"""The hostile-input suite (marker `hostile`, part of `make test`): what a hostile but realistic user does to
`rsseg`, and the promises of docs/robustness.md: exit code 0, 2 or 130; one `error:` line naming the input
and the fix, never a traceback; existing outputs and other layers unchanged after a failure; no temporary
file left after exit.

Runs `engine.cli.main` in-process (subprocesses only for signals and resource limits) with a tiny random
Mask R-CNN and rasters of a few dozen pixels, so the whole suite takes seconds per module.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.make_fixtures import write_coco_dataset, write_scene_geotiff
from tests.hostile.helpers import write_model


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture(scope="session")
def model3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model taking 3 bands (an RGB model)."""
    return write_model(tmp_path_factory.mktemp("models3") / "tiny3.pt", bands=3)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder holding only what a test puts there (inputs live next to it, outputs inside)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def raster(tmp_path: Path) -> Path:
    """A 64 x 64 one-band UTM scene (one 128-pixel tile of the tiny model)."""
    path = tmp_path / "scene.tif"
    write_scene_geotiff(path, height=64, width=64, objects=[{"kind": "rect", "box": (10, 10, 30, 40), "class_id": 1}])
    return path


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """3 one-band 48 x 64 PNGs and their annotations.json (one class, "ship"); the last image has no object."""
    return write_coco_dataset(tmp_path / "coco", n_images=3, size=(48, 64), class_names=("ship",))
