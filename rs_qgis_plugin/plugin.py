"""The plugin object QGIS creates: menu action and toolbar button for the dock, Processing provider."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

ICON = Path(__file__).resolve().parent / "icon.svg"
MENU = "&Remote sensing segmentation"


class SegmentationPlugin:
    """initGui / initProcessing / unload; unload removes everything initGui and initProcessing added."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: QAction | None = None
        self.dock = None
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS names)
        from rs_qgis_plugin.processing.provider import SegmentationProvider

        if self.provider is None:
            self.provider = SegmentationProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON)), "Segment layer…", self.iface.mainWindow())
        self.action.setObjectName("rsSegmentLayerAction")
        self.action.setCheckable(True)
        self.action.setToolTip("Segment a raster layer into polygons with a deep-learning model")
        self.action.toggled.connect(self.show_dock)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.iface.addRasterToolBarIcon(self.action)

    def show_dock(self, visible: bool = True):
        """Create the dock on first use (keeps QGIS start-up light) and show or hide it."""
        if self.dock is None and visible:
            from rs_qgis_plugin.dock import SegmentDock

            self.dock = SegmentDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            if self.action is not None:
                self.dock.visibilityChanged.connect(self.action.setChecked)
        if self.dock is not None:
            self.dock.setVisible(visible)
        return self.dock

    def unload(self) -> None:
        if self.dock is not None:
            self.dock.cancel()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
