"""The plugin loads, puts its button where a fresh profile shows it, builds its dock and Processing provider,
and unloads without a trace."""
from __future__ import annotations

from unittest.mock import MagicMock

from qgis.core import QgsApplication


def _provider_ids() -> list[str]:
    return [p.id() for p in QgsApplication.processingRegistry().providers()]


def test_load_unload_reload_leaves_no_trace(qgis_iface, monkeypatch) -> None:
    from rs_qgis_plugin import classFactory

    for name in ("addToolBarIcon", "removeToolBarIcon", "addRasterToolBarIcon"):
        monkeypatch.setattr(qgis_iface, name, MagicMock(name=name), raising=False)
    for _ in range(2):  # reloading works: the second round starts from a clean slate
        for mock in (qgis_iface.addPluginToRasterMenu, qgis_iface.removePluginRasterMenu, qgis_iface.addToolBarIcon,
                     qgis_iface.removeToolBarIcon):
            mock.reset_mock()
        plugin = classFactory(qgis_iface)
        plugin.initGui()
        assert _provider_ids().count("rsseg") == 1
        assert QgsApplication.processingRegistry().algorithmById("rsseg:segment_raster") is not None
        action = plugin.action
        qgis_iface.addToolBarIcon.assert_called_once_with(action)  # the Plugins toolbar, shown in a fresh profile
        qgis_iface.addRasterToolBarIcon.assert_not_called()  # the Raster toolbar is hidden in a fresh profile
        (plugin_menu, added), (setup_menu, setup) = [c[0] for c in qgis_iface.addPluginToRasterMenu.call_args_list]
        assert added is action and action.text() == "Segment layer…"
        assert setup_menu == plugin_menu and setup is plugin.setup_action and setup.text() == "Set up engine…"
        dock = plugin.show_dock(True)
        assert dock is not None and not dock.isHidden()
        plugin.unload()
        assert "rsseg" not in _provider_ids()
        assert [c[0] for c in qgis_iface.removePluginRasterMenu.call_args_list] == [(plugin_menu, action),
                                                                                    (plugin_menu, setup)]
        qgis_iface.removeToolBarIcon.assert_called_once_with(action)
        assert plugin.dock is None and plugin.action is None and plugin.provider is None
        assert plugin.setup_action is None
