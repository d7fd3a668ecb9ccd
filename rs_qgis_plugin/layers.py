"""Load an engine result as a QGIS layer styled by class (categorized renderer), with optional labels, into
the project's results group."""
from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsProject,
    QgsRendererCategory,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

from rs_qgis_plugin.planning import unique_name
from rs_qgis_plugin.progress import ResultSummary

RESULTS_GROUP = "Segmentation results"
LABEL_SIZE_PT = 9
HALO_SIZE_MM = 0.8

DEFAULT_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf",
                   "#999999", "#66c2a5")


def _colour(cls: dict, index: int) -> QColor:
    colour = cls.get("colour") or cls.get("color")
    if isinstance(colour, (list, tuple)) and len(colour) >= 3:
        return QColor(*[int(c) for c in colour[:3]])
    if isinstance(colour, str) and QColor(colour).isValid():
        return QColor(colour)
    return QColor(DEFAULT_COLOURS[index % len(DEFAULT_COLOURS)])


def style_by_class(layer: QgsVectorLayer, classes: tuple[dict, ...] | list[dict]) -> None:
    """Categorized renderer on `class_name`: the spec's class colours, a translucent fill, a solid outline."""
    categories = []
    for i, cls in enumerate(classes):
        rgb = ",".join(str(v) for v in _colour(cls, i).getRgb()[:3])
        symbol = QgsFillSymbol.createSimple({"color": f"{rgb},90", "outline_color": f"{rgb},255",
                                             "outline_width": "0.5"})
        categories.append(QgsRendererCategory(cls["name"], symbol, cls["name"]))
    if categories:
        layer.setRenderer(QgsCategorizedSymbolRenderer("class_name", categories))
    layer.triggerRepaint()


def label_with_class_and_score(layer: QgsVectorLayer) -> None:
    """Labels like "ship 0.93" on each polygon: 9 pt white text in a dark halo, readable on dark SAR
    backgrounds and on bright optical ones."""
    settings = QgsPalLayerSettings()
    settings.isExpression = True
    settings.fieldName = "\"class_name\" || ' ' || format_number(\"score\", 2)"
    text = QgsTextFormat()
    text.setSize(LABEL_SIZE_PT)
    text.setColor(QColor("white"))
    halo = QgsTextBufferSettings()
    halo.setEnabled(True)
    halo.setSize(HALO_SIZE_MM)
    halo.setColor(QColor(20, 20, 20))
    text.setBuffer(halo)
    settings.setFormat(text)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def add_to_results_group(project: QgsProject, layer: QgsVectorLayer, group_name: str = RESULTS_GROUP) -> None:
    """Add `layer` to `project` at the top of the results group (created at the top of the layer tree),
    renamed "name (2)", "name (3)", ... when a layer of that name exists already."""
    layer.setName(unique_name(layer.name(), (lyr.name() for lyr in project.mapLayers().values())))
    project.addMapLayer(layer, False)
    root = project.layerTreeRoot()
    group = root.findGroup(group_name) or root.insertGroup(0, group_name)
    group.insertLayer(0, layer)


def load_result_layer(path: str, name: str, classes=(), labels: bool = False,
                      temporary: bool = False) -> QgsVectorLayer:
    """The engine's output file as a styled layer (not yet added to a project).

    temporary: copy the features into a memory layer and delete the file (QGIS shows it as a scratch
    layer that must be saved explicitly). Raises ValueError if the file cannot be opened.
    """
    layer = QgsVectorLayer(path, name, "ogr")
    if not layer.isValid():
        raise ValueError(f"the engine's output {path} cannot be opened as a vector layer")
    if temporary:
        memory = layer.materialize(QgsFeatureRequest())
        memory.setName(name)
        del layer
        remove_temporary_output(path)
        layer = memory
    style_by_class(layer, classes)
    if labels:
        label_with_class_and_score(layer)
    return layer


def remove_temporary_output(path: str) -> None:
    """Delete a temporary output file (all its sidecar files) and the dock's rsseg_* folder around it."""
    base = Path(path)
    for sibling in base.parent.glob(base.stem + ".*"):
        if sibling.suffix.lower() in (".gpkg", ".gpkg-wal", ".gpkg-shm", ".shp", ".shx", ".dbf", ".prj", ".cpg",
                                      ".geojson"):
            try:
                os.remove(sibling)
            except OSError:
                pass
    if base.parent.name.startswith("rsseg_"):  # the dock's own temporary folder
        try:
            base.parent.rmdir()
        except OSError:
            pass


def summarise(layer: QgsVectorLayer, seconds: float | None = None) -> ResultSummary:
    """Objects per class and the score range of a result layer (reads attributes only)."""
    fields = layer.fields()
    names = [n for n in ("class_name", "score") if fields.indexOf(n) >= 0]
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(names, fields)
    classes, scores = [], []
    for feature in layer.getFeatures(request):
        classes.append(feature["class_name"] if "class_name" in names else "object")
        score = feature["score"] if "score" in names else None
        if isinstance(score, (int, float)):
            scores.append(float(score))
    return ResultSummary.from_values(classes, scores, seconds)
