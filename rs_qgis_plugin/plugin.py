"""The plugin object QGIS creates: a toolbar button and a menu entry for the dock, the Processing provider,
and the model catalog both share."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from rs_qgis_plugin.catalog import ModelCatalog

ICON = Path(__file__).resolve().parent / "icon.svg"
MENU = "&Remote sensing segmentation"


class SegmentationPlugin:
    """initGui / initProcessing / unload; unload removes everything initGui and initProcessing added.

    The button goes on the Plugins toolbar (shown in a fresh profile, unlike the Raster toolbar) and the
    entry in the Raster menu.
    """

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: QAction | None = None
        self.setup_action: QAction | None = None
        self.dock = None
        self.provider = None
        self.catalog = ModelCatalog()

    def initProcessing(self) -> None:  # noqa: N802 (QGIS names)
        from rs_qgis_plugin.processing.provider import SegmentationProvider

        if self.provider is None:
            self.provider = SegmentationProvider(self.catalog)
            QgsApplication.processingRegistry().addProvider(self.provider)
            self.catalog.changed.connect(self._models_changed)

    def _models_changed(self) -> None:
        """The engine listed its models: the algorithm's Model choices follow."""
        if self.provider is not None:
            self.provider.refreshAlgorithms()

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON)), "Segment layer…", self.iface.mainWindow())
        self.action.setObjectName("rsSegmentLayerAction")
        self.action.setCheckable(True)
        self.action.setToolTip("Remote sensing segmentation: find ships, airplanes, buildings… in a raster layer")
        self.action.toggled.connect(self.show_dock)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.iface.addToolBarIcon(self.action)
        self.setup_action = QAction("Set up engine…", self.iface.mainWindow())
        self.setup_action.setObjectName("rsSetupEngineAction")
        self.setup_action.setToolTip("Make the Python with torch that the segmentation engine runs in")
        self.setup_action.triggered.connect(self.open_setup)
        self.iface.addPluginToRasterMenu(MENU, self.setup_action)
        self.catalog.refresh()  # in the background: the model list is ready when the dock opens

    def show_dock(self, visible: bool = True):
        """Create the dock on first use (keeps QGIS start-up light) and show or hide it."""
        if self.dock is None and visible:
            from rs_qgis_plugin.dock import SegmentDock

            self.dock = SegmentDock(self.iface, self.iface.mainWindow(), self.catalog)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            if self.action is not None:
                self.dock.visibilityChanged.connect(self.action.setChecked)
        if self.dock is not None:
            self.dock.setVisible(visible)
        return self.dock

    def open_setup(self):
        """The "Set up engine…" dialog (also in the dock's Engine group); the dock follows a new engine."""
        from rs_qgis_plugin.setup_dialog import SetupDialog

        dialog = SetupDialog(self.iface.mainWindow())
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.engineReady.connect(self.use_engine)
        dialog.show()
        return dialog

    def use_engine(self, python: str, message: str) -> None:
        if self.dock is not None:
            self.dock.use_engine(python, message)
        self.catalog.refresh()

    def unload(self) -> None:
        if self.dock is not None:
            self.dock.cancel()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.setup_action is not None:
            self.iface.removePluginRasterMenu(MENU, self.setup_action)
            self.setup_action.deleteLater()
            self.setup_action = None
        if self.provider is not None:
            self.catalog.changed.disconnect(self._models_changed)
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
