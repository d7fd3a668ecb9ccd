"""QgsProcessingProvider "Remote sensing segmentation": "Segment raster layer", "Train model from polygons",
"Score polygons against reference", and the engine interpreter setting under Processing > Options > Providers."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from rs_qgis_plugin.catalog import ModelCatalog
from rs_qgis_plugin.engine_env import default_python
from rs_qgis_plugin.processing.score_algorithm import ScorePolygonsAlgorithm
from rs_qgis_plugin.processing.segment_algorithm import SegmentRasterAlgorithm
from rs_qgis_plugin.processing.train_algorithm import TrainFromPolygonsAlgorithm
from rs_qgis_plugin.settings import ENGINE_PYTHON_SETTING

ICON = Path(__file__).resolve().parent.parent / "icon.svg"


def _check_interpreter(value: str) -> None:
    """Processing's validator: empty (automatic), an existing file, or a command on PATH."""
    if value and not os.path.isfile(value) and shutil.which(value) is None:
        raise ValueError(f"engine interpreter '{value}' not found: give the python of the engine's virtualenv "
                         "(e.g. ~/rsseg-venv/bin/python), or leave it empty for the automatic choice")


def _processing_config():
    """Processing's option classes, or None where the Processing plugin is not importable."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return None
    return ProcessingConfig, Setting


class SegmentationProvider(QgsProcessingProvider):
    """The algorithms list the catalog's models; call refreshAlgorithms() when the catalog changes."""

    def __init__(self, catalog: ModelCatalog | None = None) -> None:
        super().__init__()
        self.catalog = catalog or ModelCatalog()

    def id(self) -> str:
        return "rsseg"

    def name(self) -> str:
        return "Remote sensing segmentation"

    def longName(self) -> str:  # noqa: N802 (QGIS names)
        return "Remote sensing segmentation (rsseg engine)"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def load(self) -> bool:
        """Register the engine interpreter setting (Processing > Options > Providers), then the algorithms."""
        config = _processing_config()
        if config is not None:
            processing_config, setting = config
            processing_config.settingIcons[self.name()] = self.icon()
            processing_config.addSetting(setting(
                self.name(), ENGINE_PYTHON_SETTING, "Engine Python interpreter (with torch, rasterio…)", "",
                valuetype=setting.FILE, validator=_check_interpreter,
                placeholder=f"automatic: {default_python()}"))
            processing_config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        config = _processing_config()
        if config is not None and ENGINE_PYTHON_SETTING in config[0].settings:
            config[0].removeSetting(ENGINE_PYTHON_SETTING)

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(SegmentRasterAlgorithm(self.catalog))
        self.addAlgorithm(TrainFromPolygonsAlgorithm(self.catalog))
        self.addAlgorithm(ScorePolygonsAlgorithm())

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg", "shp", "geojson"]
