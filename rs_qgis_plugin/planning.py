"""From the dock's request to a SegmentJob, without widgets: the processing extent, the output file, the
result layer's name and what the checks need to know about the raster (main thread; testable without a
QWidget: the map canvas comes in as a CanvasView)."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsUnitTypes,
    QgsVectorLayer,
)

from rs_qgis_plugin.area_layers import area_files
from rs_qgis_plugin.checks import RasterFacts, pixel_size_m
from rs_qgis_plugin.job import JobError, build_job
from rs_qgis_plugin.models import ModelInfo
from rs_qgis_plugin.request import OUTPUT_EXTENSIONS, SegmentJob
from rs_qgis_plugin.state import DockState


@dataclass(frozen=True)
class CanvasView:
    """What the map canvas shows: `extent` in `crs`, `width_px` pixels wide."""

    extent: QgsRectangle
    crs: QgsCoordinateReferenceSystem
    width_px: int

    @classmethod
    def of(cls, canvas) -> CanvasView | None:
        """The view of a QgsMapCanvas (None without one)."""
        if canvas is None:
            return None
        return cls(QgsRectangle(canvas.extent()), canvas.mapSettings().destinationCrs(), int(canvas.width()))


@dataclass(frozen=True)
class RunRequest:
    """One run as the dock's widgets describe it: the saved choices, the model, the live layers and the
    band mapping (1-based layer bands in model order; None = the layer as it is). `polygons` bound the extent
    (their selected features); `aoi` and `exclude` are polygon layers for --aoi/--exclude, used whole."""

    state: DockState
    model: ModelInfo | None
    layer: object  # QgsMapLayer or None
    polygons: QgsVectorLayer | None = None
    bands: tuple[int, ...] | None = None
    aoi: QgsVectorLayer | None = None
    exclude: QgsVectorLayer | None = None


def _in_layer_crs(layer: QgsRasterLayer, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> QgsRectangle:
    if crs.isValid() and layer.crs().isValid() and crs != layer.crs():
        return QgsCoordinateTransform(crs, layer.crs(), QgsProject.instance()).transformBoundingBox(rect)
    return QgsRectangle(rect)


def to_layer_crs(layer: QgsRasterLayer, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> QgsRectangle:
    """`rect` (in `crs`) as a rectangle in the layer's CRS, clipped to the layer's extent; JobError if outside."""
    clipped = _in_layer_crs(layer, rect, crs).intersect(layer.extent())
    if clipped.isEmpty():
        raise JobError(f"the processing extent does not overlap layer '{layer.name()}': pan the map onto it, "
                       "select features over it, or choose 'Whole layer'")
    return clipped


def units_per_pixel(layer: QgsRasterLayer, view: CanvasView | None) -> float | None:
    """The canvas resolution in the layer's CRS units per screen pixel (None without a usable canvas)."""
    if view is None or view.width_px <= 0 or view.extent.isEmpty():
        return None
    return _in_layer_crs(layer, view.extent, view.crs).width() / view.width_px


def processing_extent(mode: str, layer: QgsRasterLayer, view: CanvasView | None,
                      polygons: QgsVectorLayer | None) -> QgsRectangle | None:
    """The extent for `mode` ("layer", "canvas", "selection") in the layer's CRS; None = the whole layer."""
    if mode == "canvas":
        if view is None:
            raise JobError("extent 'Map canvas extent': there is no map canvas; choose 'Whole layer'")
        return to_layer_crs(layer, view.extent, view.crs)
    if mode == "selection":
        if polygons is None or polygons.selectedFeatureCount() == 0:
            name = polygons.name() if polygons is not None else "no polygon layer"
            raise JobError(f"extent 'Selected features': {name} has no selected features; select some or "
                           "choose another extent")
        return to_layer_crs(layer, polygons.boundingBoxOfSelected(), polygons.crs())
    return None


def output_target(mode: str, path: str, temporary_folder: str | None = None) -> tuple[str, bool]:
    """(output file, temporary?) for output `mode` ("temporary" or "file"); a path without a vector
    extension gets ".gpkg". JobError when no path is given or its folder does not exist."""
    if mode == "temporary":
        folder = temporary_folder or tempfile.mkdtemp(prefix="rsseg_")
        return str(Path(folder) / "segmentation.gpkg"), True
    path = path.strip()
    if not path:
        raise JobError("output file: choose a .gpkg or .shp path, or save as a temporary layer")
    if Path(path).suffix.lower() not in OUTPUT_EXTENSIONS:
        path += ".gpkg"
    if not Path(path).parent.is_dir():
        raise JobError(f"output file {path}: the folder does not exist; choose an existing folder")
    return path, False


def unique_name(name: str, taken: Iterable[str]) -> str:
    """`name`, or "name (2)", "name (3)", ... whichever is not yet taken."""
    taken = set(taken)
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def result_name(model: ModelInfo, layer_name: str, output: str, temporary: bool) -> str:
    """The result layer's base name: "<model title> – <raster>" for a temporary layer, else the file's name."""
    return f"{model.title.split(',')[0]} – {layer_name}" if temporary else Path(output).stem


def raster_facts(layer: QgsRasterLayer) -> RasterFacts:
    """Band count and names, pixel type and ground sample distance in metres of a raster layer."""
    provider = layer.dataProvider()
    count = layer.bandCount()
    names = tuple(layer.bandName(b) for b in range(1, count + 1))
    data_type = ""
    if provider is not None and count:
        kind = provider.dataType(1)
        data_type = getattr(kind, "name", None) or str(kind)
    crs = layer.crs()
    size = None
    if crs.isValid() and layer.rasterUnitsPerPixelX() > 0:
        if crs.isGeographic():
            size = pixel_size_m(layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY(), None,
                                layer.extent().center().y())
        else:
            factor = QgsUnitTypes.fromUnitToUnitFactor(crs.mapUnits(), QgsUnitTypes.DistanceMeters)
            size = pixel_size_m(layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY(), factor or None)
    return RasterFacts(layer.name(), count, names, data_type, size)


def plan_job(request: RunRequest, view: CanvasView | None) -> SegmentJob:
    """The SegmentJob for `request`; JobError names what to fix."""
    layer, model, state = request.layer, request.model, request.state
    if not isinstance(layer, QgsRasterLayer):
        raise JobError("raster layer: add a raster layer to the project and choose it")
    if model is None:
        raise JobError("model: choose a model, or wait until the engine has listed them")
    extent = processing_extent(state.extent_mode, layer, view, request.polygons)
    output, temporary = output_target(state.output_mode, state.output_path)
    areas = None
    try:
        areas = area_files(request.aoi, request.exclude)  # memory layers etc. written to a GeoPackage now
        job = build_job(layer, model.model, output, layer_name=result_name(model, layer.name(), output, temporary),
                        classes=model.classes, extent=extent, units_per_pixel=units_per_pixel(layer, view),
                        bands=request.bands, score_threshold=state.score_threshold, tile_size=state.tile_size,
                        overlap=state.overlap, device=state.device or "auto", temporary=temporary,
                        labels=state.labels, aoi=areas.aoi, exclude=areas.exclude)
        return replace(job, area_folder=areas.folder)
    except BaseException:  # a refused (or failed) job leaves no temporary folder behind
        if temporary:
            shutil.rmtree(Path(output).parent, ignore_errors=True)
        if areas is not None and areas.folder:
            shutil.rmtree(areas.folder, ignore_errors=True)
        raise
