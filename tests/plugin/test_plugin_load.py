"""The plugin loads, builds its dock and Processing provider, and unloads without a trace."""
from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QImage

from rs_qgis_plugin.dock import BROWSE


def _provider_ids() -> list[str]:
    return [p.id() for p in QgsApplication.processingRegistry().providers()]


def test_load_unload_reload_leaves_no_trace(qgis_iface) -> None:
    from rs_qgis_plugin import classFactory

    for _ in range(2):  # reloading works: the second round starts from a clean slate
        qgis_iface.addPluginToRasterMenu.reset_mock()
        qgis_iface.removePluginRasterMenu.reset_mock()
        plugin = classFactory(qgis_iface)
        plugin.initGui()
        assert _provider_ids().count("rsseg") == 1
        assert QgsApplication.processingRegistry().algorithmById("rsseg:segment_raster") is not None
        action = plugin.action
        qgis_iface.addPluginToRasterMenu.assert_called_once()
        plugin_menu, added = qgis_iface.addPluginToRasterMenu.call_args[0]
        assert added is action and action.text() == "Segment layer…"
        dock = plugin.show_dock(True)
        assert dock is not None and not dock.isHidden()
        plugin.unload()
        assert "rsseg" not in _provider_ids()
        qgis_iface.removePluginRasterMenu.assert_called_once_with(plugin_menu, action)
        qgis_iface.removeRasterToolBarIcon.assert_called_with(action)
        assert plugin.dock is None and plugin.action is None and plugin.provider is None


def test_dock_builds_and_screenshot(plugin, scene_layer, artifacts, qtbot) -> None:
    dock = plugin.show_dock(True)
    dock.resize(420, 900)
    models = [dock.model_combo.itemText(i) for i in range(dock.model_combo.count())]
    assert "ssdd-ship-maskrcnn" in models and models[-1] == BROWSE
    assert "classes: ship" in dock.model_summary.text() and "GSD" in dock.model_summary.text()
    assert dock.layer_combo.currentLayer() == scene_layer
    assert dock.tile_spin.value() == 512 and dock.run_button.text() == "Segment layer"
    assert dock.band_box.isHidden()  # 1-band layer, 1-band model: no mapping needed
    shot = artifacts / "dock.png"
    assert dock.grab().save(str(shot))
    image = QImage(str(shot))
    assert image.width() >= 300 and image.height() >= 600
