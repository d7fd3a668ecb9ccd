"""Pressing "Segment layer" runs the real engine subprocess: a styled layer in the results group with a
summary in the dock, a file, an exclude layer, a cancel, a failure."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt

from rs_qgis_plugin.area_layers import write_geopackage
from rs_qgis_plugin.layers import RESULTS_GROUP
from rs_qgis_plugin.progress import LOADING
from rs_qgis_plugin.task import LOG_TAG
from tests.data.make_fixtures import write_scene_geotiff

FIELDS = {"class_id", "class_name", "score", "area_m2", "n_tiles", "merged", "model", "source"}
RUN_TIMEOUT_MS = 300_000


def _vector_layers() -> list[QgsVectorLayer]:
    return [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)]


def _run(dock, qtbot) -> None:
    qtbot.mouseClick(dock.run_button, Qt.LeftButton)
    assert dock.task is not None, dock.log.toPlainText()
    qtbot.waitUntil(lambda: dock.task is None, timeout=RUN_TIMEOUT_MS)


def _error_lines(dock) -> list[str]:
    return [line for line in dock.log.toPlainText().splitlines() if line.startswith("error:")]


@pytest.fixture
def dock(plugin, scene_layer, tiny_info, qtbot):
    """The dock on the scene layer, tiny_checkpoint chosen (see tiny_info; the first test below browses it)."""
    dock = plugin.show_dock(True)
    dock.select_model(tiny_info)
    dock.layer_combo.setLayer(scene_layer)
    return dock


def test_browsed_checkpoint_shows_its_spec_and_defaults(dock, tiny_checkpoint) -> None:
    dock.select_model(next(m for m in dock.models if not m.checkpoint))  # another model first
    assert dock.load_checkpoint(str(tiny_checkpoint)), dock.log.toPlainText()
    assert dock.current_model().model == str(tiny_checkpoint)
    assert dock.model_combo.currentText().startswith("Ships and tanks in SAR images, 1 band, ~10 m")
    summary = dock.model_summary.text()
    assert "classes: ship, tank" in summary and "GSD 10 m" in summary and "bands: 1" in summary
    assert "id: tiny-ships" in summary
    assert (dock.tile_spin.value(), dock.overlap_spin.value()) == (128, 32)
    assert dock.score_spin.value() == pytest.approx(0.3)
    assert dock.warning_label.isHidden()  # a 1-band 10 m layer suits a 1-band 10 m SAR model


def test_segment_layer_adds_a_labelled_layer_to_the_results_group_and_a_summary(dock, qtbot, qgis_iface) -> None:
    dock.labels_check.setChecked(True)
    dock.append_log("a line of an earlier run")
    logged: list[tuple[str, int]] = []
    QgsApplication.messageLog().messageReceived.connect(
        lambda message, tag, level: logged.append((message, level)) if tag == LOG_TAG else None)
    statuses: list[str] = []
    show_status = dock.set_status
    dock.set_status = lambda text: (statuses.append(text), show_status(text))  # the task's signal lands here
    _run(dock, qtbot)
    text = dock.log.toPlainText()
    (layer,) = _vector_layers()
    assert layer.providerType() == "memory" and layer.name() == "Ships and tanks in SAR images – scene"
    group = QgsProject.instance().layerTreeRoot().findGroup(RESULTS_GROUP)
    assert group is not None and group.findLayer(layer.id()) is not None
    assert FIELDS <= set(layer.fields().names())
    feats = list(layer.getFeatures())
    assert feats, text
    for f in feats:
        assert f["class_name"] == "ship" and f["class_id"] == 1 and 0.3 <= f["score"] <= 1.0
        assert f["area_m2"] > 0 and f["source"] == "scene.tif" and f.geometry().isGeosValid()
    assert layer.crs().authid() == "EPSG:32633"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class_name"
    assert [c.value() for c in renderer.categories()] == ["ship", "tank"]
    label_format = layer.labeling().settings().format()
    assert layer.labelsEnabled() and label_format.buffer().enabled() and label_format.size() >= 9
    # status, progress and log
    assert statuses and statuses[0] == LOADING and any(s.startswith("Tile ") for s in statuses)
    assert dock.progress.value() == 100 and dock.status_label.text().startswith("Done:")
    assert "a line of an earlier run" not in text and "Model loaded, running on CPU: 9 tiles" in text
    bar = dock.log.verticalScrollBar()
    assert bar.value() == bar.maximum()
    assert logged and all(level == Qgis.Info for _, level in logged), logged
    # the summary stays in the dock; "Zoom to result" shows the layer
    assert not dock.result_group.isHidden()
    assert dock.result_label.text().startswith(f"{len(feats)} object") and "ship" in dock.result_label.text()
    assert re.search(r"scores \d\.\d\d–\d\.\d\d", dock.result_label.text())
    assert qgis_iface.messageBar().get_messages(Qgis.Success)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(layer.crs())
    canvas.setExtent(QgsRectangle(0, 0, 10, 10))
    dock.zoom_button.click()
    assert canvas.extent().contains(layer.extent())


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
    assert layer.providerType() == "ogr" and Path(layer.source().split("|")[0]) == out and layer.name() == "ships"
    assert "--extent=" in dock.log.toPlainText()
    boxes = [f.geometry().boundingBox() for f in layer.getFeatures()]
    assert boxes and all(b.intersects(visible) for b in boxes)


def test_exclude_layer_over_the_whole_raster_gives_an_empty_layer(dock, qtbot, tmp_path: Path, scene_layer,
                                                                   polygon_layer) -> None:
    land = write_geopackage(polygon_layer("drawn", scene_layer.extent().buffered(100)), str(tmp_path / "land.gpkg"),
                            "test")
    layer = QgsVectorLayer(land, "land", "ogr")
    QgsProject.instance().addMapLayer(layer)
    dock.exclude_combo.setLayer(layer)
    _run(dock, qtbot)
    text = dock.log.toPlainText()
    assert f"--exclude {land}" in text and "--exclude covers every tile" in text  # the file itself, as it is
    (result,) = [node.layer() for node in QgsProject.instance().layerTreeRoot().findGroup(RESULTS_GROUP).findLayers()]
    assert result.featureCount() == 0 and dock.status_label.text().startswith("Done:"), text


def test_cancel_says_cancelled_and_leaves_no_layer_and_no_file(plugin, qgis_new_project, tiny_checkpoint, tmp_path,
                                                              qtbot, qgis_iface) -> None:
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
    qtbot.waitUntil(lambda: dock.task is None, timeout=120_000)
    assert _vector_layers() == []
    assert list(out_dir.iterdir()) == []
    assert dock.status_label.text() == "Cancelled" and dock.run_button.isEnabled()
    assert qgis_iface.messageBar().get_messages(Qgis.Info)[-1].startswith("Cancelled")
    assert not qgis_iface.messageBar().get_messages(Qgis.Critical) and _error_lines(dock) == []


def test_failing_engine_run_shows_its_reason_once(dock, qtbot, tmp_path: Path, qgis_iface, tiny_checkpoint) -> None:
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
    assert len(_error_lines(dock)) == 1 and "chosen.pt" in _error_lines(dock)[0]
    assert dock.status_label.text().startswith("Failed:")
    assert "$ " in dock.log.toPlainText()  # the full log keeps the command line
