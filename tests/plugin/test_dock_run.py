"""Pressing "Segment layer" runs the real engine subprocess: a styled layer, a file, a cancel, a failure."""
from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import Qgis, QgsCategorizedSymbolRenderer, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import Qt

from tests.data.make_fixtures import write_scene_geotiff

FIELDS = {"class_id", "class_name", "score", "area_m2", "n_tiles", "merged", "model", "source"}
RUN_TIMEOUT_MS = 180_000


def _vector_layers() -> list[QgsVectorLayer]:
    return [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)]


def _run(dock, qtbot) -> None:
    qtbot.mouseClick(dock.run_button, Qt.LeftButton)
    assert dock.task is not None, dock.log.toPlainText()
    qtbot.waitUntil(lambda: dock.task is None, timeout=RUN_TIMEOUT_MS)


@pytest.fixture
def dock(plugin, scene_layer, tiny_checkpoint, qtbot):
    dock = plugin.show_dock(True)
    assert dock.load_checkpoint(str(tiny_checkpoint)), dock.log.toPlainText()
    dock.layer_combo.setLayer(scene_layer)
    return dock


def test_browsed_checkpoint_shows_its_spec_and_defaults(dock, tiny_checkpoint) -> None:
    assert dock.current_model().model == str(tiny_checkpoint)
    summary = dock.model_summary.text()
    assert "classes: ship, tank" in summary and "GSD 10.0 m" in summary and "bands: 1" in summary
    assert (dock.tile_spin.value(), dock.overlap_spin.value()) == (128, 32)
    assert dock.score_spin.value() == pytest.approx(0.3)


def test_segment_layer_adds_a_styled_temporary_layer(dock, qtbot, qgis_iface) -> None:
    dock.labels_check.setChecked(True)
    _run(dock, qtbot)
    layers = _vector_layers()
    assert len(layers) == 1, dock.log.toPlainText()
    layer = layers[0]
    assert layer.providerType() == "memory" and "scene" in layer.name()
    assert FIELDS <= set(layer.fields().names())
    feats = list(layer.getFeatures())
    assert feats, dock.log.toPlainText()
    for f in feats:
        assert f["class_name"] == "ship" and f["class_id"] == 1 and 0.3 <= f["score"] <= 1.0
        assert f["area_m2"] > 0 and f["source"] == "scene.tif" and f.geometry().isGeosValid()
    assert layer.crs().authid() == "EPSG:32633"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class_name"
    assert [c.value() for c in renderer.categories()] == ["ship", "tank"]
    assert layer.labelsEnabled()
    assert dock.progress.value() == 100 and "done:" in dock.log.toPlainText()
    assert qgis_iface.messageBar().get_messages(Qgis.Success)


def test_segment_to_geopackage_with_canvas_extent(dock, qtbot, tmp_path: Path, qgis_iface, scene_layer) -> None:
    out = tmp_path / "ships.gpkg"
    dock.output_combo.setCurrentIndex(1)
    dock.output_file.setFilePath(str(out))
    dock.extent_combo.setCurrentIndex(1)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(scene_layer.crs())
    full = scene_layer.extent()
    corner = full.buffered(0)
    corner.setXMaximum(full.xMinimum() + full.width() / 4)
    corner.setYMinimum(full.yMaximum() - full.height() / 4)
    canvas.setExtent(corner)
    visible = canvas.extent().intersect(full)  # the canvas widens the rectangle to its aspect ratio
    assert visible.width() < full.width() and visible.height() < full.height()
    _run(dock, qtbot)
    assert out.is_file(), dock.log.toPlainText()
    layer = _vector_layers()[0]
    assert layer.providerType() == "ogr" and Path(layer.source().split("|")[0]) == out
    assert "--extent=" in dock.log.toPlainText()
    boxes = [f.geometry().boundingBox() for f in layer.getFeatures()]
    assert boxes and all(b.intersects(visible) for b in boxes)


def test_cancel_mid_run_leaves_no_layer_and_no_file(plugin, qgis_new_project, tiny_checkpoint, tmp_path, qtbot,
                                                   qgis_iface) -> None:
    raster = tmp_path / "big.tif"
    write_scene_geotiff(raster, height=1536, width=1536)
    layer = QgsRasterLayer(str(raster), "big")
    QgsProject.instance().addMapLayer(layer)
    dock = plugin.show_dock(True)
    assert dock.load_checkpoint(str(tiny_checkpoint))
    dock.layer_combo.setLayer(layer)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dock.output_combo.setCurrentIndex(1)
    dock.output_file.setFilePath(str(out_dir / "ships.gpkg"))
    qtbot.mouseClick(dock.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dock.progress.value() > 0, timeout=RUN_TIMEOUT_MS)
    qtbot.mouseClick(dock.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dock.task is None, timeout=60_000)
    assert _vector_layers() == []
    assert list(out_dir.iterdir()) == []
    assert "cancelled" in dock.log.toPlainText() and dock.run_button.isEnabled()
    assert not qgis_iface.messageBar().get_messages(Qgis.Critical)


def test_failing_engine_run_shows_its_reason(dock, qtbot, tmp_path: Path, qgis_iface, tiny_checkpoint) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:1000])  # truncated: a corrupt checkpoint
    assert not dock.load_checkpoint(str(broken))  # browsing it is refused with the engine's reason
    errors = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert errors and "broken.pt" in errors[-1]
    # the same failure at run time: the chosen checkpoint is corrupted after it was picked
    chosen = tmp_path / "chosen.pt"
    chosen.write_bytes(tiny_checkpoint.read_bytes())
    assert dock.load_checkpoint(str(chosen))
    chosen.write_bytes(b"not a checkpoint")
    _run(dock, qtbot)
    assert _vector_layers() == []
    errors = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert "chosen.pt" in errors[-1] and "Traceback" not in errors[-1]
    assert "$ " in dock.log.toPlainText()  # the full log keeps the command line
