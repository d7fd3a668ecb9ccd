"""QgsProcessingProvider with the "Segment raster layer" algorithm."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from rs_qgis_plugin.processing.segment_algorithm import SegmentRasterAlgorithm

ICON = Path(__file__).resolve().parent.parent / "icon.svg"


class SegmentationProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "rsseg"

    def name(self) -> str:
        return "Remote sensing segmentation"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS name)
        self.addAlgorithm(SegmentRasterAlgorithm())

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg", "shp", "geojson"]
