"""Processing algorithm "Segment raster layer": the same job builder, checks and engine runner as the dock."""
from __future__ import annotations

import time
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)

from rs_qgis_plugin import settings
from rs_qgis_plugin.catalog import ModelCatalog
from rs_qgis_plugin.checks import band_problem, mismatch_warnings, parse_bands, translate_flags
from rs_qgis_plugin.engine_env import ModelInfoError, ModelListError, checkpoint_info
from rs_qgis_plugin.job import JobError, build_job, execute_job, remove_export
from rs_qgis_plugin.layers import style_by_class
from rs_qgis_plugin.models import ModelInfo
from rs_qgis_plugin.planning import raster_facts, to_layer_crs
from rs_qgis_plugin.processing.engine_run import VECTOR_FORMATS, require_engine
from rs_qgis_plugin.processing.help import ALGORITHM_HELP, PARAMETER_HELP, short_help
from rs_qgis_plugin.progress import ProgressTracker
from rs_qgis_plugin.request import OUTPUT_EXTENSIONS
from rs_qgis_plugin.runner import WARNING

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_NUMBERS = {"score_threshold": 0.5, "tile_size": 512, "overlap": 128}  # when no model is listed yet


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


def model_or_default(value: float | None, shown_default: float, model_default: float | None) -> float | None:
    """The number to pass to the engine: None (the model's own default) when the parameter was left at the
    default it shows, which is the default model's; otherwise the value given."""
    if value is None or model_default is None:
        return value
    return None if abs(float(value) - float(shown_default)) < 1e-9 else value


class SegmentRasterAlgorithm(QgsProcessingAlgorithm):
    """INPUT raster + MODEL (or CHECKPOINT) -> OUTPUT polygons with class_name, score, area_m2, ..."""

    INPUT, MODEL, CHECKPOINT, EXTENT, BANDS = "INPUT", "MODEL", "CHECKPOINT", "EXTENT", "BANDS"
    SCORE, TILE, OVERLAP, DEVICE, OUTPUT = "SCORE_THRESHOLD", "TILE_SIZE", "OVERLAP", "DEVICE", "OUTPUT"
    AOI, EXCLUDE = "AOI", "EXCLUDE"
    NAMES = {"bands": "Bands", "extent": "Processing extent", "score-threshold": "Score threshold",
             "tile-size": "Tile size", "overlap": "Tile overlap", "device": "Device", "model": "Model",
             "out": "Segmented polygons", "aoi": "Area of interest", "exclude": "Exclude areas"}

    def __init__(self, catalog: ModelCatalog | None = None) -> None:
        super().__init__()
        self.catalog = catalog or ModelCatalog()
        self.models: list[ModelInfo] = self.catalog.models()

    def createInstance(self):  # noqa: N802 (QGIS names below too)
        return SegmentRasterAlgorithm(self.catalog)

    def name(self) -> str:
        return "segment_raster"

    def displayName(self) -> str:
        return "Segment raster layer"

    def shortHelpString(self) -> str:
        return short_help(self.models)

    def helpString(self) -> str:  # noqa: N802
        return ALGORITHM_HELP

    def _defaults(self) -> dict[str, float]:
        spec = self.models[0].spec if self.models else {}
        return {key: spec.get(key, value) for key, value in DEFAULT_NUMBERS.items()}

    def initAlgorithm(self, config=None) -> None:
        defaults = self._defaults()
        names = [m.title for m in self.models] or ["The engine's default model"]
        params = [
            QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"),
            QgsProcessingParameterEnum(self.MODEL, "Model", options=names, defaultValue=0),
            QgsProcessingParameterFile(self.CHECKPOINT, "Checkpoint (.pt, replaces the model)", extension="pt",
                                       optional=True),
            QgsProcessingParameterExtent(self.EXTENT, "Processing extent", optional=True),
            QgsProcessingParameterFeatureSource(self.AOI, "Area of interest (polygons)",
                                                [QgsProcessing.TypeVectorPolygon], optional=True),
            QgsProcessingParameterFeatureSource(self.EXCLUDE, "Exclude areas, e.g. land (polygons)",
                                                [QgsProcessing.TypeVectorPolygon], optional=True),
            QgsProcessingParameterString(self.BANDS, "Bands, in model order (e.g. 3,2,1 or 1,1,1)", optional=True),
            QgsProcessingParameterNumber(self.SCORE, "Score threshold", QgsProcessingParameterNumber.Double,
                                         defaultValue=defaults["score_threshold"], minValue=0.0, maxValue=1.0),
            QgsProcessingParameterNumber(self.TILE, "Tile size (pixels)", defaultValue=defaults["tile_size"],
                                         minValue=32),
            QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)", defaultValue=defaults["overlap"],
                                         minValue=0),
            QgsProcessingParameterEnum(self.DEVICE, "Device", options=list(DEVICES), defaultValue=0),
            QgsProcessingParameterVectorDestination(self.OUTPUT, "Segmented polygons"),
        ]
        for param in params:
            param.setHelp(PARAMETER_HELP[param.name()])
            self.addParameter(param)

    def _model(self, parameters, context) -> ModelInfo | None:
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint:
            try:
                return checkpoint_info(settings.engine_python(), checkpoint)
            except ModelInfoError as exc:
                raise QgsProcessingException(f"Checkpoint {checkpoint}: {exc}") from None
        models = self.models
        if not models:  # listed neither at start-up nor in the background yet (qgis_process): list now
            try:
                models = self.catalog.list_now()
            except ModelListError as exc:
                raise QgsProcessingException(f"Model: the engine could not list its models: {exc}") from None
        if not models:
            raise QgsProcessingException("Model: the engine has no shipped model; give a Checkpoint (.pt)")
        return models[min(self.parameterAsEnum(parameters, self.MODEL, context), len(models) - 1)]

    def _number(self, parameters, key: str, context, spec_key: str, info: ModelInfo, integer: bool):
        if parameters.get(key) in (None, ""):
            return None
        value = (self.parameterAsInt if integer else self.parameterAsDouble)(parameters, key, context)
        return model_or_default(value, self._defaults()[spec_key], info.spec.get(spec_key))

    def _polygons(self, parameters, key: str, context, feedback) -> str | None:
        """The file the engine reads for an optional polygon layer; a layer that is not a GeoPackage, Shapefile or
        GeoJSON file as it is (a memory layer, selected features only, a subset filter) is written to a temporary
        GeoPackage first."""
        if not parameters.get(key):
            return None
        return self.parameterAsCompatibleSourceLayerPath(parameters, key, context, VECTOR_FORMATS, "gpkg", feedback)

    def processAlgorithm(self, parameters, context, feedback):
        python = require_engine()
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Raster layer: not a raster layer; choose one")
        info = self._model(parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(output).suffix.lower() not in OUTPUT_EXTENSIONS:
            raise QgsProcessingException(f"Segmented polygons: {output} is not .gpkg, .shp or .geojson; choose one")
        try:
            bands = parse_bands(parameters.get(self.BANDS), "Bands")
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        problem = band_problem(bands, layer.bandCount(), info, layer.name(), "Bands")
        if problem:
            raise QgsProcessingException(problem)
        for warning in mismatch_warnings(info, raster_facts(layer), bands):
            feedback.pushWarning(warning)
        try:
            extent = None
            if parameters.get(self.EXTENT):
                rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
                extent = to_layer_crs(layer, rect, layer.crs())
            job = build_job(
                layer, info.model, output, layer_name=Path(output).stem, classes=info.classes, extent=extent,
                bands=bands, score_threshold=self._number(parameters, self.SCORE, context, "score_threshold", info,
                                                          False),
                tile_size=self._number(parameters, self.TILE, context, "tile_size", info, True),
                overlap=self._number(parameters, self.OVERLAP, context, "overlap", info, True),
                device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)], temporary=False,
                aoi=self._polygons(parameters, self.AOI, context, feedback),
                exclude=self._polygons(parameters, self.EXCLUDE, context, feedback))
        except JobError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(f"Model: {info.title} ({info.name})")

        tracker = ProgressTracker()
        feedback.setProgressText(tracker.status)

        def log(line: str, level: str) -> None:
            (feedback.pushWarning if level == WARNING else feedback.pushInfo)(line)

        def event(data: dict) -> None:
            if tracker.update(data, time.monotonic()):
                feedback.setProgressText(tracker.status)

        try:
            outcome = execute_job(job, python, feedback.setProgress, log, feedback.isCanceled,
                                  on_event=event, gpu_names=settings.gpu_names())
        finally:
            remove_export(job)
        if outcome.cancelled or feedback.isCanceled():
            raise QgsProcessingException("Cancelled: no output written")
        if not outcome.ok:
            raise QgsProcessingException(translate_flags(outcome.error or "the engine failed", self.NAMES))
        feedback.pushInfo(f"{outcome.done.get('features')} objects written to {output}")
        if context.willLoadLayerOnCompletion(output):
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(ClassStyle.create(info.classes))
        return {self.OUTPUT: output}
