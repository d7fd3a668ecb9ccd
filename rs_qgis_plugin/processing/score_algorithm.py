"""Processing algorithm "Score polygons against reference" on `rsseg score`: precision, recall and F1 overall
and per class (log and table), and optionally the misses and false alarms as layers to look at."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from rs_qgis_plugin.processing.engine_run import VECTOR_FORMATS, EngineSteps, require_engine
from rs_qgis_plugin.processing.help import SCORE_HELP, SCORE_PARAMETER_HELP, parameter_help

COLUMNS = (("class", QVariant.String), ("tp", QVariant.Int), ("fp", QVariant.Int), ("fn", QVariant.Int),
           ("precision", QVariant.Double), ("recall", QVariant.Double), ("f1", QVariant.Double))


class OutlineStyle(QgsProcessingLayerPostProcessorInterface):
    """Draws a loaded misses / false-alarms layer as a thick coloured outline over a light fill."""

    live: dict[str, OutlineStyle] = {}  # QGIS does not own post-processors: keep them alive

    def __init__(self, colour: str) -> None:
        super().__init__()
        self.colour = colour

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS name)
        if isinstance(layer, QgsVectorLayer):
            symbol = QgsFillSymbol.createSimple({"color": f"{self.colour}40", "outline_color": self.colour,
                                                 "outline_width": "0.8"})
            layer.setRenderer(QgsSingleSymbolRenderer(symbol))
            layer.triggerRepaint()

    @classmethod
    def create(cls, key: str, colour: str) -> OutlineStyle:
        cls.live[key] = cls(colour)
        return cls.live[key]


def _split_source(path: str) -> tuple[str, str | None]:
    """'f.gpkg|layername=x' -> ('f.gpkg', 'x')."""
    file, _, rest = path.partition("|")
    layer = next((part.split("=", 1)[1] for part in rest.split("|") if part.startswith("layername=")), None)
    return file, layer


def score_line(name: str, counts: dict) -> str:
    """"ship: precision 0.667, recall 0.800, F1 0.727 (TP 4, FP 2, FN 1)"."""
    def value(key: str) -> str:
        v = counts.get(key)
        return f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"

    return (f"{name}: precision {value('precision')}, recall {value('recall')}, F1 {value('f1')} "
            f"(TP {counts.get('tp')}, FP {counts.get('fp')}, FN {counts.get('fn')})")


class ScorePolygonsAlgorithm(QgsProcessingAlgorithm):
    """PREDICTION vs REFERENCE at IOU -> OUTPUT table (+ MISSES, FALSE_ALARMS layers), PRECISION/RECALL/F1."""

    PREDICTION, REFERENCE, IOU = "PREDICTION", "REFERENCE", "IOU"
    CLASS_FIELD, REFERENCE_CLASS_FIELD = "CLASS_FIELD", "REFERENCE_CLASS_FIELD"
    OUTPUT, MISSES, FALSE_ALARMS = "OUTPUT", "MISSES", "FALSE_ALARMS"
    LABELS = {"PREDICTION": "Prediction layer", "REFERENCE": "Reference layer", "IOU": "IoU for a hit",
              "CLASS_FIELD": "Class field", "REFERENCE_CLASS_FIELD": "Reference class field", "OUTPUT": "Scores",
              "MISSES": "Misses", "FALSE_ALARMS": "False alarms"}
    NAMES = {"iou": "IoU for a hit", "class-field": "Class field", "reference-class-field": "Reference class field",
             "misses": "Misses", "false-alarms": "False alarms"}

    def createInstance(self):  # noqa: N802 (QGIS names below too)
        return ScorePolygonsAlgorithm()

    def name(self) -> str:
        return "score_polygons"

    def displayName(self) -> str:
        return "Score polygons against reference"

    def shortHelpString(self) -> str:
        return parameter_help(SCORE_HELP, self.LABELS, SCORE_PARAMETER_HELP)

    def helpString(self) -> str:  # noqa: N802
        return SCORE_HELP

    def initAlgorithm(self, config=None) -> None:
        polygon = [QgsProcessing.TypeVectorPolygon]
        label = self.LABELS
        params = [
            QgsProcessingParameterFeatureSource(self.PREDICTION, label[self.PREDICTION], polygon),
            QgsProcessingParameterFeatureSource(self.REFERENCE, label[self.REFERENCE], polygon),
            QgsProcessingParameterNumber(self.IOU, label[self.IOU], QgsProcessingParameterNumber.Double,
                                         defaultValue=0.5, minValue=0.01, maxValue=1.0),
            QgsProcessingParameterField(self.CLASS_FIELD, label[self.CLASS_FIELD], defaultValue="class_name",
                                        parentLayerParameterName=self.PREDICTION, optional=True),
            QgsProcessingParameterField(self.REFERENCE_CLASS_FIELD, label[self.REFERENCE_CLASS_FIELD],
                                        parentLayerParameterName=self.REFERENCE, optional=True),
            QgsProcessingParameterFeatureSink(self.OUTPUT, label[self.OUTPUT], QgsProcessing.TypeVector),
            QgsProcessingParameterVectorDestination(self.MISSES, label[self.MISSES], QgsProcessing.TypeVectorPolygon,
                                                    optional=True, createByDefault=False),
            QgsProcessingParameterVectorDestination(self.FALSE_ALARMS, label[self.FALSE_ALARMS],
                                                    QgsProcessing.TypeVectorPolygon, optional=True,
                                                    createByDefault=False),
        ]
        for param in params:
            param.setHelp(SCORE_PARAMETER_HELP[param.name()])
            self.addParameter(param)
        for key, text in (("PRECISION", "Precision"), ("RECALL", "Recall"), ("F1", "F1")):
            self.addOutput(QgsProcessingOutputNumber(key, f"{text} (all classes)"))

    def _source(self, parameters, key: str, context, feedback) -> tuple[str, str | None]:
        return _split_source(self.parameterAsCompatibleSourceLayerPath(parameters, key, context, VECTOR_FORMATS,
                                                                      "gpkg", feedback))

    def processAlgorithm(self, parameters, context, feedback):
        python = require_engine()
        prediction, prediction_layer = self._source(parameters, self.PREDICTION, context, feedback)
        reference, reference_layer = self._source(parameters, self.REFERENCE, context, feedback)
        args = ["score", prediction, reference, "--iou", repr(self.parameterAsDouble(parameters, self.IOU, context)),
                "--class-field", self.parameterAsString(parameters, self.CLASS_FIELD, context) or "class_name",
                "--progress", "jsonl"]
        for flag, value in (("--prediction-layer", prediction_layer), ("--reference-layer", reference_layer),
                            ("--reference-class-field",
                             self.parameterAsString(parameters, self.REFERENCE_CLASS_FIELD, context))):
            if value:
                args += [flag, value]
        written = {}
        for key, flag, colour in ((self.MISSES, "--misses", "#e41a1c"), (self.FALSE_ALARMS, "--false-alarms",
                                                                          "#ff7f00")):
            path = self.parameterAsOutputLayer(parameters, key, context) if parameters.get(key) else ""
            if path:
                args += [flag, path]
                written[key] = path
                if context.willLoadLayerOnCompletion(path):
                    context.layerToLoadOnCompletionDetails(path).setPostProcessor(OutlineStyle.create(key, colour))
        done = EngineSteps(python, feedback, self.NAMES).run(args, 0, 90, "Step", "Matching the polygons…")
        overall, per_class = done.get("overall") or {}, done.get("per_class") or {}
        feedback.pushInfo(f"One-to-one matching at IoU >= {done.get('iou')}")
        feedback.pushInfo(score_line("all", overall))
        for name, counts in per_class.items():
            feedback.pushInfo(score_line(name, counts))
        fields = QgsFields()
        for name, kind in COLUMNS:
            fields.append(QgsField(name, kind))
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.NoGeometry,
                                          QgsCoordinateReferenceSystem())
        for name, counts in [*per_class.items(), ("all", overall)]:
            feature = QgsFeature(fields)
            feature.setAttributes([name] + [counts.get(key) for key, _ in COLUMNS[1:]])
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        feedback.setProgress(100)
        return {self.OUTPUT: dest, **written, "PRECISION": overall.get("precision"), "RECALL": overall.get("recall"),
                "F1": overall.get("f1")}
