"""The dock fits QGIS's default dock width (about 300 px), keeps Run, Cancel and the progress bar in view,
and builds from its .ui file."""
from __future__ import annotations

from pathlib import Path

from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtGui import QImage
from qgis.PyQt.QtWidgets import QApplication, QWidget

from rs_qgis_plugin.dock import BROWSE, SegmentDock
from rs_qgis_plugin.engine_env import EngineReport
from tests.data.make_fixtures import write_scene_geotiff

WIDTH = 300


def _long_named_sar_layer(tmp_path: Path) -> QgsRasterLayer:
    path = tmp_path / "S1A_IW_GRDH_1SDV_20240101T054512_20240101T054537_051912_0645A1_ABCD_amplitude.tif"
    write_scene_geotiff(path)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.GetRasterBand(1).SetDescription("SAR amplitude, VV polarisation, calibrated sigma nought, terrain corrected")
    ds = None
    layer = QgsRasterLayer(str(path), path.stem)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _settle(qtbot) -> None:
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)


def _too_wide(dock: SegmentDock) -> list[tuple[str, int]]:
    return [(w.objectName() or type(w).__name__, w.minimumSizeHint().width())
            for w in dock.findChildren(QWidget) if w.isVisibleTo(dock) and w.minimumSizeHint().width() > WIDTH]


def test_dock_fits_300_px_with_the_optical_model_on_a_long_named_sar_layer(plugin, qgis_new_project, qgis_iface,
                                                                           tmp_path, qtbot, artifacts) -> None:
    """The issue's worst case: band mapping shown, long layer and band names, a warning, a long engine error
    and a result summary, every group open. Nothing may need more than 300 px."""
    layer = _long_named_sar_layer(tmp_path)
    dock = SegmentDock(qgis_iface, None, plugin.catalog)
    qtbot.addWidget(dock)
    dock.layer_combo.setLayer(layer)
    dock.select_model(next(m for m in dock.models if m.sensor == "optical"))
    assert len(dock.band_combos) == 3 and not dock.band_box.isHidden()
    assert not dock.warning_label.isHidden() and "looks like a SAR image" in dock.warning_label.text()
    dock._show_report(EngineReport(False, "engine interpreter '/home/analyst/miniconda3/envs/"
                                          "remote_sensing_segmentation_engine_2024/bin/python3.11' not found"))
    dock.result_label.setText("57 objects: 21 storage_tank, 14 baseball_diamond, 9 ground_track_field, 8 harbor, "
                              "5 basketball_court\nscores 0.50–0.99 · 1234 s")
    dock.result_group.setVisible(True)
    for group in dock.findChildren(QgsCollapsibleGroupBox):
        group.setCollapsed(False)
    dock.resize(WIDTH, 900)
    dock.show()
    _settle(qtbot)
    assert dock.widget().minimumSizeHint().width() <= WIDTH
    too_wide = _too_wide(dock)
    assert not too_wide, too_wide
    assert not dock.scroll.horizontalScrollBar().isVisible()
    assert dock.scroll.widget().width() <= dock.scroll.viewport().width()
    dock.grab().save(str(artifacts / "dock_300px.png"))


def test_run_cancel_and_progress_stay_outside_the_scrolled_parameters(plugin, scene_layer, qgis_iface, qtbot) -> None:
    dock = SegmentDock(qgis_iface, None, plugin.catalog)
    qtbot.addWidget(dock)
    dock.resize(WIDTH, 420)  # short: the parameters must scroll, the run strip must not
    dock.show()
    _settle(qtbot)
    for widget in (dock.run_button, dock.cancel_button, dock.progress, dock.status_label):
        assert widget.isVisible() and not dock.scroll.isAncestorOf(widget)
        bottom = widget.mapTo(dock, widget.rect().bottomLeft()).y()
        assert bottom <= dock.height()
    assert dock.scroll.verticalScrollBar().isVisible()


def test_parameters_and_engine_start_collapsed_and_the_dock_comes_from_its_ui_file(plugin, scene_layer, qgis_iface,
                                                                                 qtbot, artifacts) -> None:
    import rs_qgis_plugin.dock

    assert Path(rs_qgis_plugin.dock.__file__).with_name("dock.ui").is_file()
    dock = SegmentDock(qgis_iface, None, plugin.catalog)
    qtbot.addWidget(dock)
    dock.resize(WIDTH, 900)
    dock.show()
    _settle(qtbot)
    assert dock.objectName() == "RsSegmentationDock" and dock.windowTitle() == "Remote sensing segmentation"
    assert dock.params_group.isCollapsed() and dock.engine_group.isCollapsed()
    assert not dock.tile_spin.isVisible() and not dock.check_button.isVisible()
    assert not dock.model_group.isCollapsed() and dock.result_group.isHidden()
    models = [dock.model_combo.itemText(i) for i in range(dock.model_combo.count())]
    assert models[-1] == BROWSE and any(t.startswith("Ships in SAR images") for t in models)
    assert "id: ssdd-ship-maskrcnn" in dock.model_summary.text() and "GSD" in dock.model_summary.text()
    assert dock.layer_combo.currentLayer() == scene_layer and dock.band_box.isHidden()
    assert dock.tile_spin.value() == 512 and dock.run_button.text() == "Segment layer"
    shot = artifacts / "dock.png"
    assert dock.grab().save(str(shot))
    assert QImage(str(shot)).width() == WIDTH
