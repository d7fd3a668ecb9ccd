"""Plugin tests (pytest-qgis, headless): a real QGIS application, the real engine as a subprocess.

The engine interpreter is this test interpreter (the project's .venv has the engine installed); models
are tiny checkpoints whose heads are biased to predict full-box "ship" masks, so every run yields
polygons quickly and deterministically. A subprocess makes them: like the plugin, this process never imports
torch.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsProject, QgsRasterLayer, QgsRectangle, QgsSettings, QgsVectorLayer

from rs_qgis_plugin import background, settings
from rs_qgis_plugin.engine_env import EngineReport, check_engine, checkpoint_info, interpreter_stamp
from rs_qgis_plugin.models import ModelInfo
from rs_qgis_plugin.settings import ENGINE_PYTHON_KEY, PREFIX
from tests.data.make_fixtures import write_scene_geotiff
from tests.data.once import once, once_json

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RSSEG_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))


@pytest.fixture(scope="session", autouse=True)
def engine_interpreter() -> str:
    """The plugin runs the engine with this test interpreter (as qgis_process would with the env var)."""
    os.environ["RSSEG_ENGINE_PYTHON"] = sys.executable
    return sys.executable


def _clear_settings() -> None:
    stored = QgsSettings()
    stored.remove(PREFIX.rstrip("/"))
    stored.remove(ENGINE_PYTHON_KEY)
    stored.remove("QgsCollapsibleGroupBox/rs_qgis_plugin")  # the dock's groups, open or closed


@pytest.fixture(scope="session")
def engine_report(engine_interpreter: str, tmp_path_factory: pytest.TempPathFactory) -> EngineReport:
    """One real engine check of the test interpreter, made once per run (test_engine_env.py checks what it says)."""
    data = once_json(tmp_path_factory, "engine-report", lambda: asdict(check_engine(engine_interpreter)))
    return EngineReport(**{**data, "devices": tuple(tuple(d) for d in data["devices"])})


@pytest.fixture(scope="session")
def engine_check(engine_interpreter: str, engine_report: EngineReport) -> settings.EngineCheck:
    """That check, as the plugin remembers a good one."""
    report = engine_report
    assert report.ok, report.message
    return settings.EngineCheck(engine_interpreter, interpreter_stamp(engine_interpreter), report.message,
                                report.devices, "test session")


@pytest.fixture(autouse=True)
def clean_settings(engine_check: settings.EngineCheck):
    """No plugin setting leaks between tests (QgsSettings here is the test app's, not a user profile). The
    session's engine check is remembered, as after a first check, so docks need not check again; tests of
    the check itself forget it."""
    _clear_settings()
    settings.remember_check(engine_check)
    yield
    background.wait_idle(300)  # no background call may outlive its test
    _clear_settings()


def _make_models(folder: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "tests.data.tiny_model", str(folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' tiny models, made once per run by the engine's interpreter (tests/data/tiny_model.py)."""
    return once(tmp_path_factory, "plugin-models", _make_models)


@pytest.fixture(scope="session")
def tiny_checkpoint(models: Path) -> Path:
    """A tiny 1-band Mask R-CNN ("ship", "tank") whose heads always say "ship" with a full-box mask."""
    return models / "tiny_ships.pt"


@pytest.fixture(scope="session")
def tiny_info(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    """What the engine says of tiny_checkpoint (`rsseg info --json`), asked once per run: `dock.select_model(
    tiny_info)` chooses it as browsing it (`dock.load_checkpoint`) does once the engine has read it."""
    return ModelInfo(**once_json(tmp_path_factory, "tiny-info",
                                 lambda: asdict(checkpoint_info(sys.executable, str(tiny_checkpoint)))))


@pytest.fixture(scope="session")
def rgb_checkpoint(models: Path) -> Path:
    """The same model taking 3 bands."""
    return models / "rgb.pt"


@pytest.fixture(scope="session")
def semantic_checkpoint(models: Path) -> Path:
    """A tiny Semantic FPN ("ship", "tank") whose classifier says "ship" everywhere (probability ~0.88)."""
    return models / "sem.pt"


@pytest.fixture
def scene_layer(tmp_path: Path, qgis_new_project) -> QgsRasterLayer:
    """The 256 x 256 single-band fixture scene (EPSG:32633, 10 m) added to a fresh project."""
    path = tmp_path / "scene.tif"
    write_scene_geotiff(path)
    layer = QgsRasterLayer(str(path), "scene")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture
def polygon_layer(qgis_new_project):
    """Make a memory polygon layer (EPSG:32633, the scene's CRS) of rectangles, added to the project."""
    def make(name: str, *rects: QgsRectangle) -> QgsVectorLayer:
        layer = QgsVectorLayer("Polygon?crs=EPSG:32633", name, "memory")
        features = []
        for rect in rects:
            feature = QgsFeature()
            feature.setGeometry(QgsGeometry.fromRect(rect))
            features.append(feature)
        layer.dataProvider().addFeatures(features)
        layer.updateExtents()
        QgsProject.instance().addMapLayer(layer)
        return layer

    return make


@pytest.fixture
def plugin(qgis_iface, qtbot):
    """The plugin as QGIS creates it (classFactory + initGui), its models listed; unloaded afterwards."""
    from rs_qgis_plugin import classFactory

    instance = classFactory(qgis_iface)
    instance.initGui()
    qtbot.waitUntil(instance.catalog.is_current, timeout=300_000)
    yield instance
    instance.unload()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
