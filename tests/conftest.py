"""Shared pytest set-up: a marker for each test folder that has one, torch on one thread, the tiny checkpoint,
tiny generated rasters and COCO datasets (written into tmp dirs), and the clean-up of the temporary folder the
test process's QGIS application makes.

The plugin tests' process never imports torch (the plugin does not): torch is imported lazily here, and not
for tests/plugin.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.data.make_fixtures import write_coco_dataset, write_scene_geotiff

# One OpenMP (torch) thread in every process the tests start (engine CLI, qgis_process and the engine it runs, Dask
# workers) and in this one (torch is not imported yet): `make test` runs two test workers on two cores, where more
# threads only spin-wait for each other (a tiled segment run took twice the CPU time with 2 threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
MARKED = ("distributed", "hostile", "research")  # every test below tests/NAME/ is marked NAME
TORCH_FREE = ("plugin",)
# With `-n N --dist loadgroup` one worker runs each of these whole: tests/distributed, whose tests start groups of
# processes (torchrun ranks in lockstep, Dask workers) that slow each other down badly when they overlap, and whose
# Dask tests share a module's LocalCluster; and test_resume.py, whose cases share one training run.
WHOLE = ("tests/distributed/", "tests/engine/test_resume.py")
QGIS_TEMP = pytest.StashKey[Path | None]()


def _folder(path: Path) -> str:
    """The folder below tests/ that holds `path` ("" for none)."""
    parts = path.resolve().relative_to(HERE).parts if HERE in path.resolve().parents else ()
    return parts[0] if len(parts) > 1 else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder markers."""
    for item in items:
        folder = _folder(item.path)
        if folder in MARKED:
            item.add_marker(folder)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup`: each test goes to whichever worker is free, but each group of WHOLE to one worker.
    (pytest-xdist's own loadgroup, by xdist_group marks, stopped grouping with pytest 9.2: pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((group for group in WHOLE if nodeid.startswith(group)), nodeid)

    return Scheduling(config, log)


@pytest.fixture(autouse=True)
def _one_thread(request: pytest.FixtureRequest):
    """torch on one thread in the test process: the 2-core machine runs two test workers (or other work)."""
    if _folder(request.path) in TORCH_FREE:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny 1-band ship model saved as a checkpoint (score threshold 0)."""
    from tests.data.tiny_model import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


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
