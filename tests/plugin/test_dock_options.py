"""Dock options: band mapping, extents from selected features, area of interest and exclude layers, non-file
rasters, the engine check in the background and remembered, mismatch warnings, the log, settings."""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt

from rs_qgis_plugin import settings
from rs_qgis_plugin.area_layers import write_geopackage
from rs_qgis_plugin.checks import translate_flags
from rs_qgis_plugin.dock import FLAG_NAMES, SegmentDock
from rs_qgis_plugin.job import JobError, remove_export
from rs_qgis_plugin.layers import RESULTS_GROUP
from rs_qgis_plugin.state import DockState
from tests.data.make_fixtures import write_scene_geotiff


def forget_engine_check() -> None:
    QgsSettings().remove(settings.PREFIX + settings.ENGINE_CHECK_GROUP)


def _add_raster(path: Path, name: str, **kwargs) -> QgsRasterLayer:
    write_scene_geotiff(path, **kwargs)
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_band_mapping_appears_when_band_counts_differ(plugin, qgis_new_project, tmp_path: Path) -> None:
    dock = plugin.show_dock(True)  # shipped 1-band SAR model selected by default
    rgb = _add_raster(tmp_path / "rgb.tif", "rgb", bands=3)
    dock.layer_combo.setLayer(rgb)
    assert not dock.band_box.isHidden() and len(dock.band_combos) == 1
    assert dock.band_mapping() == [1]
    dock.band_combos[0].setCurrentIndex(2)
    assert dock.band_mapping() == [3]
    assert "--bands" in dock.current_job().request.engine_args()
    gray = _add_raster(tmp_path / "gray.tif", "gray")
    dock.layer_combo.setLayer(gray)
    assert dock.band_box.isHidden() and dock.band_mapping() is None


def test_one_band_layer_feeds_every_band_of_a_three_band_model(plugin, qgis_new_project, rgb_checkpoint,
                                                               tmp_path: Path) -> None:
    dock = plugin.show_dock(True)
    gray = _add_raster(tmp_path / "gray.tif", "gray")
    assert dock.load_checkpoint(str(rgb_checkpoint))
    dock.layer_combo.setLayer(gray)
    assert dock.band_mapping() == [1, 1, 1]


def test_selected_features_give_the_extent(plugin, scene_layer, polygon_layer, qgis_iface) -> None:
    dock = plugin.show_dock(True)
    dock.extent_combo.setCurrentIndex(2)
    full = scene_layer.extent()
    aoi = QgsRectangle(full.xMinimum() + 100, full.yMinimum() + 200, full.xMinimum() + 900, full.yMinimum() + 700)
    polygons = polygon_layer("aoi", aoi)
    dock.polygon_combo.setLayer(polygons)
    with pytest.raises(JobError, match="no selected features"):
        dock.current_job()
    polygons.selectAll()
    extent = dock.current_job().request.extent
    assert extent == pytest.approx((aoi.xMinimum(), aoi.yMinimum(), aoi.xMaximum(), aoi.yMaximum()))
    polygons.removeSelection()  # pressing "Segment layer" with nothing selected reports, runs nothing
    dock.run_button.click()
    assert dock.task is None and "no selected features" in dock.log.toPlainText()


def test_raster_that_is_not_a_plain_file_is_exported_first(plugin, qgis_new_project, tiny_info, tmp_path,
                                                           qtbot) -> None:
    tif = tmp_path / "scene.tif"
    write_scene_geotiff(tif)
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tif, "scene.tif")
    layer = QgsRasterLayer(f"/vsizip/{archive}/scene.tif", "zipped")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    dock = plugin.show_dock(True)
    dock.select_model(tiny_info)
    dock.layer_combo.setLayer(layer)
    job = dock.current_job()
    assert job.export is not None and (job.export.width, job.export.height) == (256, 256)
    qtbot.mouseClick(dock.run_button, Qt.LeftButton)
    running = dock.task.job
    qtbot.waitUntil(lambda: dock.task is None, timeout=180_000)
    assert not Path(running.export.path).parent.exists()  # the temporary GeoTIFF is cleaned up
    assert not Path(running.request.output).parent.exists()  # so is the temporary output's folder
    results = [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)]
    assert len(results) == 1 and results[0].featureCount() > 0, dock.log.toPlainText()
    assert results[0].crs().authid() == "EPSG:32633"
    assert "Writing the layer extent to" in dock.log.toPlainText()


def test_area_layers_start_at_none_and_add_no_flags(plugin, scene_layer, polygon_layer) -> None:
    land = polygon_layer("land", scene_layer.extent())
    dock = plugin.show_dock(True)
    for combo in (dock.aoi_combo, dock.exclude_combo):
        assert combo.currentLayer() is None and combo.currentText() == "(none)"
        assert [combo.itemText(i) for i in range(combo.count())] == ["(none)", "land"]  # polygon layers only
        assert "representative point" in combo.toolTip()
    polygon_layer("sea", scene_layer.extent())  # a layer added later is not chosen either
    assert dock.aoi_combo.currentLayer() is None and dock.exclude_combo.currentLayer() is None
    job = dock.current_job()
    assert not {"--aoi", "--exclude"} & set(job.request.engine_args()) and job.area_folder is None
    message = translate_flags(f"--exclude '{land.source()}': holds no polygons", FLAG_NAMES)
    assert message.startswith('"Exclude areas" ')


def test_a_polygon_file_goes_to_the_engine_as_it_is_and_a_filtered_one_is_written(
        plugin, scene_layer, polygon_layer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = scene_layer.extent()
    two = polygon_layer("drawn", full, QgsRectangle(full.xMinimum(), full.yMinimum(), full.center().x(),
                                                    full.center().y()))
    gpkg = write_geopackage(two, str(tmp_path / "land.gpkg"), "test")
    land = QgsVectorLayer(f"{gpkg}|layername=land", "land", "ogr")
    assert land.isValid() and land.featureCount() == 2
    QgsProject.instance().addMapLayer(land)
    dock = plugin.show_dock(True)
    dock.exclude_combo.setLayer(land)
    job = dock.current_job()
    args = job.request.engine_args()
    assert args[args.index("--exclude") + 1] == f"{gpkg}|layername=land" and "--aoi" not in args
    assert job.area_folder is None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the written layer's rsseg_* folder goes
    land.setSubsetString("fid = 1")  # the engine would read the whole file: what the layer shows is written
    job = dock.current_job()
    folder = Path(job.area_folder)
    assert folder.parent == tmp_path and Path(job.request.exclude) == folder / "exclude.gpkg"
    assert QgsVectorLayer(job.request.exclude, "written", "ogr").featureCount() == 1
    remove_export(job)
    assert not folder.exists()


def test_a_memory_aoi_layer_is_written_to_a_temporary_geopackage_and_removed_after_the_run(
        plugin, scene_layer, polygon_layer, tiny_info, qtbot) -> None:
    full = scene_layer.extent()
    harbour = QgsRectangle(full.xMinimum(), full.yMaximum() - 1280, full.xMinimum() + 1280, full.yMaximum())
    dock = plugin.show_dock(True)
    dock.select_model(tiny_info)
    dock.layer_combo.setLayer(scene_layer)
    dock.aoi_combo.setLayer(polygon_layer("harbour", harbour))  # the top-left 128 x 128 pixels
    qtbot.mouseClick(dock.run_button, Qt.LeftButton)
    running = dock.task.job
    written = running.request.aoi
    assert Path(written) == Path(running.area_folder) / "aoi.gpkg"
    copy = QgsVectorLayer(written, "copy", "ogr")
    assert [f.geometry().boundingBox() for f in copy.getFeatures()] == [harbour]
    del copy
    qtbot.waitUntil(lambda: dock.task is None, timeout=180_000)
    assert not Path(running.area_folder).exists()  # removed with the job
    assert f"--aoi {written}" in dock.log.toPlainText()
    (result,) = [node.layer() for node in QgsProject.instance().layerTreeRoot().findGroup(RESULTS_GROUP).findLayers()]
    points = [f.geometry().pointOnSurface() for f in result.getFeatures()]
    assert points and all(harbour.contains(p.asPoint()) for p in points), dock.log.toPlainText()


def test_check_engine_runs_in_the_background_and_is_remembered(plugin, qgis_new_project, qgis_iface,
                                                                 qtbot) -> None:
    forget_engine_check()
    dock = SegmentDock(qgis_iface, None, plugin.catalog)  # nothing remembered: it checks by itself
    qtbot.addWidget(dock)
    assert dock.checking and not dock.check_button.isEnabled()  # the UI is not blocked meanwhile
    assert dock.engine_status.text().startswith("checking")
    qtbot.waitUntil(lambda: not dock.checking, timeout=300_000)
    assert dock.engine_status.text().startswith("engine OK: torch")
    devices = [dock.device_combo.itemData(i) for i in range(dock.device_combo.count())]
    assert devices[:2] == ["auto", "cpu"] and all(d.startswith("cuda:") for d in devices[2:])
    assert settings.remembered_check().message == dock.last_report.message
    again = SegmentDock(qgis_iface, None, plugin.catalog)  # the next session shows the remembered check
    qtbot.addWidget(again)
    assert not again.checking and again.engine_status.text().startswith("engine OK: torch")
    assert "(checked " in again.engine_status.text()


def test_a_new_interpreter_is_checked_again(plugin, qgis_new_project, qtbot, monkeypatch) -> None:
    monkeypatch.delenv("RSSEG_ENGINE_PYTHON")
    dock = plugin.show_dock(True)
    dock.python_file.setFilePath("/nowhere/bin/python")
    qtbot.waitUntil(lambda: "'/nowhere/bin/python' not found" in dock.engine_status.text().replace("\u200b", ""),
                    timeout=60_000)
    assert settings.stored_engine_python() == "/nowhere/bin/python"
    assert settings.remembered_check().python != "/nowhere/bin/python"  # a failed check is not remembered


def test_optical_model_on_a_sar_layer_warns_before_the_run(plugin, scene_layer, qgis_iface, qtbot) -> None:
    dock = plugin.show_dock(True)
    assert dock.warning_label.isHidden()  # the shipped SAR model on a 1-band SAR-like layer
    dock.select_model(next(m for m in dock.models if m.sensor == "optical"))
    assert dock.band_mapping() == [1, 1, 1]
    text = dock.warning_label.text()
    assert not dock.warning_label.isHidden() and "looks like a SAR image" in text and "colours are lost" in text
    task = dock.start()
    assert task is not None
    dock.cancel()
    qtbot.waitUntil(lambda: dock.task is None, timeout=300_000)
    warnings = qgis_iface.messageBar().get_messages(Qgis.Warning)
    assert any("looks like a SAR image" in w for w in warnings)
    assert "warning: Layer 'scene' looks like a SAR image" in dock.log.toPlainText()


def test_log_keeps_the_newest_line_in_view(plugin, qgis_new_project) -> None:
    dock = plugin.show_dock(True)
    dock.resize(300, 600)
    for i in range(200):
        dock.append_log(f"line {i}")
    bar = dock.log.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()


def test_settings_persist_between_sessions(plugin, scene_layer, tiny_checkpoint, tiny_info, qgis_iface,
                                          tmp_path) -> None:
    dock = plugin.show_dock(True)
    dock.select_model(tiny_info)  # a browsed checkpoint
    dock.score_spin.setValue(0.65)
    dock.tile_spin.setValue(256)
    dock.overlap_spin.setValue(48)
    dock.extent_combo.setCurrentIndex(1)
    dock.output_combo.setCurrentIndex(1)
    dock.output_file.setFilePath(str(tmp_path / "keep.gpkg"))
    dock.labels_check.setChecked(True)
    dock.close()  # saves, as closing QGIS does
    assert DockState.load() == dock.state()
    again = SegmentDock(qgis_iface, None, plugin.catalog)
    assert again.current_model().model == str(tiny_checkpoint)
    assert again.model_combo.currentText().endswith("tiny_ships.pt") and "id: tiny-ships" in again.model_summary.text()
    assert (again.score_spin.value(), again.tile_spin.value(), again.overlap_spin.value()) == (0.65, 256, 48)
    assert (again.extent_combo.currentData(), again.output_combo.currentData()) == ("canvas", "file")
    assert again.output_file.filePath() == str(tmp_path / "keep.gpkg") and again.labels_check.isChecked()
    again.deleteLater()
