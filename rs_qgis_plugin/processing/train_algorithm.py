"""Processing algorithm "Train model from polygons": chips -> train -> evaluate in the engine subprocess.

The raster and the polygons become image chips and COCO files (`rsseg chips`), the base model is fine-tuned
on them (`rsseg train --init`), the best checkpoint is measured on the validation chips (`rsseg evaluate`)
and copied to OUTPUT; the new model is then listed in the dock and in "Segment raster layer".
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    NULL,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.catalog import ModelCatalog
from rs_qgis_plugin.checks import band_problem, parse_bands
from rs_qgis_plugin.engine_env import ModelInfoError, ModelListError, checkpoint_info
from rs_qgis_plugin.job import JobError, local_raster_path
from rs_qgis_plugin.models import ModelInfo
from rs_qgis_plugin.planning import raster_facts, to_layer_crs
from rs_qgis_plugin.processing.engine_run import VECTOR_FORMATS, EngineSteps, require_engine
from rs_qgis_plugin.processing.help import TRAIN_HELP, TRAIN_PARAMETER_HELP, parameter_help

DEVICES = ("auto", "cpu", "cuda")
WARMUP_ITERS = 20  # a short warm-up: fine-tuning runs are a few hundred iterations


def class_names(values) -> list[str]:
    """Distinct class values of a field as the engine names them: text stripped, 3.0 -> "3", nulls dropped."""
    names = set()
    for value in values:
        if value is None or value == NULL:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        if text:
            names.add(text)
    return sorted(names)


def chip_classes(base: list[str], found: list[str] | None) -> tuple[list[str] | None, str]:
    """The `--classes` for the chips, and a line saying what that means for the model's head.

    found: the classes of the polygons (None: no class field, every polygon one class). Polygons of the base
    model's classes keep its classes (and every weight); other classes make a new head.
    """
    if found is None:
        if len(base) == 1:
            return base, f"every polygon is a '{base[0]}', the base model's class: all its weights are kept"
        return None, ("one class (no class field) and a base model of several classes: the model gets a new "
                      "head for that class")
    if found and set(found) <= set(base):
        return base, f"classes {', '.join(found)} are the base model's: all its weights are kept"
    new = [c for c in found if c not in base]
    return None, (f"classes {', '.join(new)} are new to the base model: the model gets a new head for "
                  f"{', '.join(found)} (the rest of its weights are kept)")


class TrainFromPolygonsAlgorithm(QgsProcessingAlgorithm):
    """INPUT raster + POLYGONS (+ CLASS_FIELD) + BASE_MODEL -> OUTPUT checkpoint, validation AP in the log."""

    INPUT, POLYGONS, CLASS_FIELD, EXTENT, AOI = "INPUT", "POLYGONS", "CLASS_FIELD", "EXTENT", "AOI"
    BASE_MODEL, BASE_CHECKPOINT, BANDS, EPOCHS = "BASE_MODEL", "BASE_CHECKPOINT", "BANDS", "EPOCHS"
    TILE, VAL, DEVICE, OUTPUT, AP = "TILE_SIZE", "VALIDATION_FRACTION", "DEVICE", "OUTPUT", "VALIDATION_AP"
    LABELS = {"INPUT": "Raster layer", "POLYGONS": "Polygons of the objects", "CLASS_FIELD": "Class field",
              "EXTENT": "Extent", "AOI": "Area of interest", "BASE_MODEL": "Base model",
              "BASE_CHECKPOINT": "Base checkpoint (.pt, replaces the base model)", "BANDS": "Bands, in model order",
              "EPOCHS": "Epochs", "TILE_SIZE": "Chip size (pixels)", "VALIDATION_FRACTION": "Validation fraction",
              "DEVICE": "Device", "OUTPUT": "Trained model"}
    NAMES = {"class-field": "Class field", "extent": "Extent", "aoi": "Area of interest", "bands": "Bands",
             "tile-size": "Chip size", "val-fraction": "Validation fraction", "init": "Base model",
             "epochs": "Epochs", "device": "Device", "classes": "Class field", "crop-size": "Chip size"}

    def __init__(self, catalog: ModelCatalog | None = None) -> None:
        super().__init__()
        self.catalog = catalog or ModelCatalog()
        self.models: list[ModelInfo] = self.catalog.models()
        self._trained: ModelInfo | None = None
        self._results: dict = {}

    def createInstance(self):  # noqa: N802 (QGIS names below too)
        return TrainFromPolygonsAlgorithm(self.catalog)

    def name(self) -> str:
        return "train_from_polygons"

    def displayName(self) -> str:
        return "Train model from polygons"

    def shortHelpString(self) -> str:
        return parameter_help(TRAIN_HELP, self.LABELS, TRAIN_PARAMETER_HELP)

    def helpString(self) -> str:  # noqa: N802
        return TRAIN_HELP

    def initAlgorithm(self, config=None) -> None:
        names = [m.label for m in self.models] or ["The engine's default model"]
        polygon = [QgsProcessing.TypeVectorPolygon]
        lb = self.LABELS
        params = [
            QgsProcessingParameterRasterLayer(self.INPUT, lb[self.INPUT]),
            QgsProcessingParameterFeatureSource(self.POLYGONS, lb[self.POLYGONS], polygon),
            QgsProcessingParameterField(self.CLASS_FIELD, lb[self.CLASS_FIELD], parentLayerParameterName=self.POLYGONS,
                                        optional=True),
            QgsProcessingParameterExtent(self.EXTENT, lb[self.EXTENT], optional=True),
            QgsProcessingParameterFeatureSource(self.AOI, lb[self.AOI], polygon, optional=True),
            QgsProcessingParameterEnum(self.BASE_MODEL, lb[self.BASE_MODEL], options=names, defaultValue=0),
            QgsProcessingParameterFile(self.BASE_CHECKPOINT, lb[self.BASE_CHECKPOINT], extension="pt", optional=True),
            QgsProcessingParameterString(self.BANDS, lb[self.BANDS], optional=True),
            QgsProcessingParameterNumber(self.EPOCHS, lb[self.EPOCHS], defaultValue=6, minValue=1, maxValue=1000),
            QgsProcessingParameterNumber(self.TILE, lb[self.TILE], defaultValue=512, minValue=64, maxValue=4096),
            QgsProcessingParameterNumber(self.VAL, lb[self.VAL], QgsProcessingParameterNumber.Double, defaultValue=0.2,
                                         minValue=0.0, maxValue=0.9),
            QgsProcessingParameterEnum(self.DEVICE, lb[self.DEVICE], options=list(DEVICES), defaultValue=0),
            QgsProcessingParameterFileDestination(self.OUTPUT, lb[self.OUTPUT], fileFilter="Model checkpoints (*.pt)"),
        ]
        for param in params:
            param.setHelp(TRAIN_PARAMETER_HELP[param.name()])
            self.addParameter(param)
        self.addOutput(QgsProcessingOutputNumber(self.AP, "Validation AP (mask AP, or mIoU for semantic models)"))

    def _base(self, parameters, context, python: str) -> ModelInfo:
        checkpoint = self.parameterAsFile(parameters, self.BASE_CHECKPOINT, context)
        if checkpoint:
            try:
                return checkpoint_info(python, checkpoint)
            except ModelInfoError as exc:
                raise QgsProcessingException(f"Base checkpoint {checkpoint}: {exc}") from None
        models = self.models
        if not models:
            try:
                models = self.catalog.list_now()
            except ModelListError as exc:
                raise QgsProcessingException(f"Base model: the engine could not list its models: {exc}") from None
        if not models:
            raise QgsProcessingException("Base model: the engine has no shipped model; give a Base checkpoint (.pt)")
        return models[min(self.parameterAsEnum(parameters, self.BASE_MODEL, context), len(models) - 1)]

    def _output(self, parameters, context, base: ModelInfo) -> Path:
        output = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        if output.suffix.lower() != ".pt":
            raise QgsProcessingException(f"Trained model: {output} is not a .pt file; give a name ending in .pt")
        if base.checkpoint and output.resolve() == Path(base.model).resolve():
            raise QgsProcessingException("Trained model: the base checkpoint itself; give a new file name")
        if not output.parent.is_dir():
            raise QgsProcessingException(f"Trained model: folder {output.parent} does not exist; choose another")
        return output

    def _chip_args(self, parameters, context, feedback, base: ModelInfo) -> tuple[list[str], str]:
        """`rsseg chips` arguments (without --out) and what the classes mean for the model's head."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Raster layer: not a raster layer; choose one")
        raster = local_raster_path(layer)
        if raster is None:
            raise QgsProcessingException(f"Raster layer: '{layer.name()}' is not a local raster file; save it as a "
                                         "GeoTIFF first (right-click > Export > Save As)")
        try:
            bands = parse_bands(parameters.get(self.BANDS), "Bands")
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        problem = band_problem(bands, layer.bandCount(), base, layer.name(), "Bands")
        if problem:
            raise QgsProcessingException(problem)
        polygons = self.parameterAsCompatibleSourceLayerPath(parameters, self.POLYGONS, context, VECTOR_FORMATS,
                                                            "gpkg", feedback)
        args = [raster, polygons, "--tile-size", str(self.parameterAsInt(parameters, self.TILE, context)),
                "--val-fraction", repr(self.parameterAsDouble(parameters, self.VAL, context))]
        if bands:
            args += ["--bands", ",".join(str(b) for b in bands)]
        field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        found = None
        if field:
            source = self.parameterAsSource(parameters, self.POLYGONS, context)
            found = class_names(source.uniqueValues(source.fields().lookupField(field)))
            args += ["--class-field", field]
        classes, meaning = chip_classes([str(c.get("name")) for c in base.classes], found)
        if classes:
            args += ["--classes", ",".join(classes)]
        if parameters.get(self.AOI):
            args += ["--aoi", self.parameterAsCompatibleSourceLayerPath(parameters, self.AOI, context, VECTOR_FORMATS,
                                                                       "gpkg", feedback)]
        elif parameters.get(self.EXTENT):
            try:
                rect = to_layer_crs(layer, self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs()),
                                    layer.crs())
            except JobError as exc:
                raise QgsProcessingException(f"Extent: {exc}") from None
            args.append("--extent=" + ",".join(repr(v) for v in (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(),
                                                                  rect.yMaximum())))
        size, allowed = raster_facts(layer).pixel_size_m, base.gsd_range_m
        if size and allowed and base.gsd_m and not allowed[0] <= size <= allowed[1]:
            args += ["--gsd", repr(base.gsd_m)]  # as segment will: resample to the model's pixel size
            feedback.pushInfo(f"The raster's {size:.3g} m pixels are resampled to the model's {base.gsd_m:g} m")
        return args, meaning

    def processAlgorithm(self, parameters, context, feedback):
        python = require_engine()
        base = self._base(parameters, context, python)
        output = self._output(parameters, context, base)
        chips_args, meaning = self._chip_args(parameters, context, feedback, base)
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        feedback.pushInfo(f"Base model: {base.title} ({base.name}); {meaning}")
        steps = EngineSteps(python, feedback, self.NAMES)
        work = Path(tempfile.mkdtemp(prefix="rsseg_train_"))
        try:
            chips = steps.run(["chips", *chips_args, "--out", str(work / "chips"), "--progress", "jsonl"],
                              0, 10, "Chip", "Cutting chips…")
            images = str(work / "chips" / "images")
            val = int(chips.get("val_chips") or 0)
            train = ["train", "--coco", str(work / "chips" / "train.json"), "--images", images, "--init", base.model,
                     "--out", str(work / "run"), "--name", output.stem, "--epochs",
                     str(self.parameterAsInt(parameters, self.EPOCHS, context)), "--crop-size",
                     str(self.parameterAsInt(parameters, self.TILE, context)), "--workers", "0", "--warmup-iters",
                     str(WARMUP_ITERS), "--device", device, "--progress", "jsonl"]
            if val:
                train += ["--val-coco", str(work / "chips" / "val.json")]
            trained = steps.run(train, 10, 90 if val else 100, "Iteration", "Loading the base model…")
            best = Path(trained["output"])
            ap = None
            if val:
                done = steps.run(["evaluate", "--checkpoint", str(best), "--coco", str(work / "chips" / "val.json"),
                                  "--images", images, "--device", device, "--progress", "jsonl"],
                                 90, 100, "Image", "Evaluating on the validation chips…")
                headline = done.get("headline") or {}
                ap = headline.get(done.get("score_name"))
                scores = ", ".join(f"{k} {v:.1f}" if isinstance(v, (int, float)) else f"{k} n/a"
                                   for k, v in headline.items())
                feedback.pushInfo(f"Validation ({val} chips): {scores}")
            else:
                feedback.pushInfo("No validation chips (Validation fraction 0): no validation AP")
            partial = output.with_name(f".{output.name}.partial")
            shutil.copyfile(best, partial)
            os.replace(partial, output)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        try:
            self._trained = checkpoint_info(python, str(output))
        except ModelInfoError as exc:
            raise QgsProcessingException(f"Trained model: {exc}") from None
        feedback.pushInfo(f"Trained model written to {output}: '{self._trained.title}'")
        self._results = {self.OUTPUT: str(output), self.AP: ap}
        return dict(self._results)

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802
        """On the UI thread: the new model joins the dock's list (and this provider's)."""
        if self._trained is not None:
            ModelCatalog.add_trained(self._trained)
        return dict(self._results)
