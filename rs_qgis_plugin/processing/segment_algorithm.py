"""Processing algorithm "Segment raster layer": the same job builder and engine runner as the dock."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)

from rs_qgis_plugin import settings
from rs_qgis_plugin.engine_env import ModelInfoError, checkpoint_info, shipped_models
from rs_qgis_plugin.job import JobError, build_job, execute_job, remove_export, to_layer_crs
from rs_qgis_plugin.layers import style_by_class
from rs_qgis_plugin.request import OUTPUT_EXTENSIONS

DEVICES = ("auto", "cpu", "cuda")


class ClassStyle(QgsProcessingLayerPostProcessorInterface):
    """Styles the loaded output by class; one live instance (QGIS does not own post-processors)."""

    live: ClassStyle | None = None

    def __init__(self, classes) -> None:
        super().__init__()
        self.classes = classes

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS name)
        if isinstance(layer, QgsVectorLayer):
            style_by_class(layer, self.classes)

    @staticmethod
    def create(classes) -> ClassStyle:
        ClassStyle.live = ClassStyle(classes)
        return ClassStyle.live


class SegmentRasterAlgorithm(QgsProcessingAlgorithm):
    """INPUT raster + MODEL (or CHECKPOINT) -> OUTPUT polygons with class_name, score, area_m2, ..."""

    INPUT, MODEL, CHECKPOINT, EXTENT, BANDS = "INPUT", "MODEL", "CHECKPOINT", "EXTENT", "BANDS"
    SCORE, TILE, OVERLAP, DEVICE, OUTPUT = "SCORE_THRESHOLD", "TILE_SIZE", "OVERLAP", "DEVICE", "OUTPUT"

    def __init__(self) -> None:
        super().__init__()
        self.models = shipped_models()

    def createInstance(self):  # noqa: N802 (QGIS names below too)
        return SegmentRasterAlgorithm()

    def name(self) -> str:
        return "segment_raster"

    def displayName(self) -> str:
        return "Segment raster layer"

    def shortHelpString(self) -> str:
        return ("Segments a raster into polygons (ships, airplanes, buildings...) with a deep-learning model run "
                "by the rsseg engine in its own Python environment. Empty numbers mean the model's defaults. "
                "Output fields: class_id, class_name, score, area_m2, n_tiles, merged, model, source.")

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"))
        names = [m.model for m in self.models] or ["(no shipped model)"]
        self.addParameter(QgsProcessingParameterEnum(self.MODEL, "Shipped model", options=names, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.CHECKPOINT, "Checkpoint (.pt, overrides the shipped model)",
                                                     extension="pt", optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Processing extent", optional=True))
        self.addParameter(QgsProcessingParameterBand(self.BANDS, "Bands fed to the model, in model order",
                                                     parentLayerParameterName=self.INPUT, optional=True,
                                                     allowMultiple=True))
        self.addParameter(QgsProcessingParameterNumber(self.SCORE, "Score threshold",
                                                       QgsProcessingParameterNumber.Double, optional=True,
                                                       minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.TILE, "Tile size (pixels)", optional=True, minValue=32))
        self.addParameter(QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)", optional=True,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Segmented polygons"))

    def _model(self, parameters, context):
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint:
            try:
                return checkpoint_info(settings.engine_python(), checkpoint)
            except ModelInfoError as exc:
                raise QgsProcessingException(f"checkpoint {checkpoint}: {exc}") from None
        if not self.models:
            raise QgsProcessingException("no shipped model found: give a CHECKPOINT (.pt)")
        return self.models[self.parameterAsEnum(parameters, self.MODEL, context)]

    @staticmethod
    def _optional_number(parameters, key: str):
        value = parameters.get(key)
        return None if value in (None, "") else value

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("INPUT: not a raster layer")
        info = self._model(parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() not in OUTPUT_EXTENSIONS:
            raise QgsProcessingException(f"OUTPUT {output}: the engine writes .gpkg, .shp or .geojson; choose one")
        try:
            extent = None
            if parameters.get(self.EXTENT):
                rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
                extent = to_layer_crs(layer, rect, layer.crs())
            score, tile, overlap = (self._optional_number(parameters, k) for k in (self.SCORE, self.TILE, self.OVERLAP))
            job = build_job(
                layer, info.model, output, layer_name=Path(output).stem, classes=info.classes, extent=extent,
                bands=self.parameterAsInts(parameters, self.BANDS, context) or None,
                score_threshold=None if score is None else self.parameterAsDouble(parameters, self.SCORE, context),
                tile_size=None if tile is None else self.parameterAsInt(parameters, self.TILE, context),
                overlap=None if overlap is None else self.parameterAsInt(parameters, self.OVERLAP, context),
                device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)], temporary=False)
        except JobError as exc:
            raise QgsProcessingException(str(exc)) from None
        try:
            outcome = execute_job(job, settings.engine_python(), feedback.setProgress, feedback.pushInfo,
                                  feedback.isCanceled)
        finally:
            remove_export(job)
        if outcome.cancelled or feedback.isCanceled():
            raise QgsProcessingException("cancelled: no output written")
        if not outcome.ok:
            raise QgsProcessingException(f"segmentation failed: {outcome.error}")
        feedback.pushInfo(f"{outcome.done.get('features')} objects written to {output}")
        if context.willLoadLayerOnCompletion(output):
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(ClassStyle.create(info.classes))
        return {self.OUTPUT: output}
