"""Plugin tests (pytest-qgis, headless): a real QGIS application, the real engine as a subprocess.

The engine interpreter is this test interpreter (the project's .venv has the engine installed); models
are tiny checkpoints whose heads are biased to predict full-box "ship" masks, so every run yields
polygons quickly and deterministically.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from qgis.core import QgsProject, QgsRasterLayer, QgsSettings

from engine.checkpoint import Checkpoint, save_checkpoint
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names
from rs_qgis_plugin import background, settings
from rs_qgis_plugin.engine_env import check_engine, interpreter_stamp
from rs_qgis_plugin.settings import ENGINE_PYTHON_KEY, PREFIX
from tests.data.make_fixtures import write_scene_geotiff

ARTIFACTS = Path(os.environ.get("RSSEG_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "out" / "test-artifacts"))
TINY = {"backbone": "resnet18", "fpn_channels": 16, "representation_size": 32, "mask_head_channels": 8,
        "mask_head_layers": 1, "rpn_pre_nms_top_n_test": 30, "rpn_post_nms_top_n_test": 10,
        "detections_per_img": 5, "anchor_sizes": [8, 16, 32, 64, 128]}


def make_tiny_checkpoint(path: Path, bands: int = 1) -> Path:
    """A tiny Mask R-CNN ("ship", "tank") whose heads always say "ship" with a full-box mask."""
    torch.manual_seed(0)
    spec = ModelSpec(name="tiny-ships", architecture="mask_rcnn", config=TINY,
                     classes=classes_from_names(["ship", "tank"]), bands=bands,
                     band_names=tuple(f"b{i + 1}" for i in range(bands)),
                     normalisation=Normalisation(mean=(0.5,) * bands, std=(0.5,) * bands),
                     gsd_m=10.0, tile_size=128, overlap=32, score_threshold=0.3)
    model = build_model(spec)
    with torch.no_grad():
        heads = model.roi_heads
        heads.box_predictor.cls_score.weight.zero_()
        heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 8.0, 0.0]))
        heads.box_predictor.bbox_pred.weight.zero_()
        heads.box_predictor.bbox_pred.bias.zero_()
        heads.mask_predictor.mask_fcn_logits.weight.zero_()
        heads.mask_predictor.mask_fcn_logits.bias.fill_(8.0)
    save_checkpoint(Checkpoint(spec, model.state_dict(), {"note": "biased test model"}, {}), path)
    return path


def make_tiny_semantic_checkpoint(path: Path) -> Path:
    """A tiny Semantic FPN ("ship", "tank") whose classifier says "ship" everywhere (probability ~0.88)."""
    torch.manual_seed(0)
    spec = ModelSpec(name="tiny-sem", architecture="semantic_fpn", task="semantic",
                     config={"fpn_channels": 16, "decoder_channels": 8}, classes=classes_from_names(["ship", "tank"]),
                     bands=1, band_names=("b1",), normalisation=Normalisation(mean=(0.5,), std=(0.5,)),
                     gsd_m=10.0, tile_size=128, overlap=32)
    model = build_model(spec)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))
    save_checkpoint(Checkpoint(spec, model.state_dict(), {"note": "biased test model"}, {}), path)
    return path


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
def engine_check(engine_interpreter: str) -> settings.EngineCheck:
    """One real engine check of the test interpreter, made once."""
    report = check_engine(engine_interpreter)
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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny_ships.pt")


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
