"""Turn QGIS layers into a SegmentJob (main thread) and execute it (any thread).

`build_job` reads everything it needs from the layers on the main thread: file path, extent in the
layer's CRS, and for rasters that are not local files (WMS, XYZ, virtual) a plan to write the chosen
extent to a temporary GeoTIFF. `execute_job` runs in a QgsTask or a Processing algorithm.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)

from rs_qgis_plugin.engine_env import engine_root
from rs_qgis_plugin.request import RasterExport, SegmentJob, SegmentRequest
from rs_qgis_plugin.runner import INFO, EngineOutcome, LogCallback, run_engine

MAX_EXPORT_PIXELS = 20000  # per side, for web/virtual layers without a native resolution


class JobError(ValueError):
    """A user-fixable problem with the chosen inputs; the message names the input and the fix."""


def local_raster_path(layer: QgsRasterLayer) -> str | None:
    """The file behind a GDAL raster layer, or None for WMS/XYZ/virtual/in-archive layers."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    if any(parts.get(key) for key in ("vsiPrefix", "vsiSuffix", "layerName")):
        return None  # inside an archive, or one table/subdataset of a container: export it
    path = parts.get("path", "")
    return path if path and not path.startswith("/vsi") and os.path.isfile(path) else None


def plan_export(layer: QgsRasterLayer, extent: QgsRectangle | None, units_per_pixel: float | None,
                folder: str | None = None) -> RasterExport:
    """How to write a non-file layer's `extent` to a GeoTIFF: native resolution if it has one, else the
    given map units per pixel (the canvas's, in the layer's CRS)."""
    provider = layer.dataProvider()
    sized = bool(provider.capabilities() & provider.Size) and provider.xSize() > 0
    if extent is None:
        if not sized:
            raise JobError(f"layer '{layer.name()}' is a web or virtual layer without a fixed size: choose 'map "
                           "canvas extent' or 'selected features' as the processing extent")
        extent = layer.extent()
    res = (layer.rasterUnitsPerPixelX() if sized else None) or units_per_pixel
    if not res or res <= 0:
        raise JobError(f"layer '{layer.name()}': cannot tell its resolution; zoom the map to the scale to process at")
    width, height = math.ceil(extent.width() / res), math.ceil(extent.height() / res)
    if max(width, height) > MAX_EXPORT_PIXELS:
        raise JobError(f"layer '{layer.name()}': the extent is {width} x {height} pixels at this resolution; "
                       f"zoom in or choose a smaller extent (at most {MAX_EXPORT_PIXELS} pixels a side)")
    folder = folder or tempfile.mkdtemp(prefix="rsseg_")
    path = str(Path(folder) / f"{_safe(layer.name())}.tif")
    return RasterExport(provider.clone(), QgsCoordinateReferenceSystem(layer.crs()), QgsRectangle(extent),
                        max(1, width), max(1, height), path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "raster"


def write_export(export: RasterExport, feedback: QgsRasterBlockFeedback | None = None) -> None:
    """Write the planned GeoTIFF (worker thread); JobError when GDAL fails."""
    writer = QgsRasterFileWriter(export.path)
    writer.setOutputFormat("GTiff")
    pipe = QgsRasterPipe()
    if not pipe.set(export.provider):
        raise JobError("cannot read the raster layer's data for export")
    err = writer.writeRaster(pipe, export.width, export.height, export.extent, export.crs,
                             QgsProject.instance().transformContext(), feedback)
    if err != QgsRasterFileWriter.NoError or not os.path.isfile(export.path):
        raise JobError(f"writing the layer to the temporary GeoTIFF {export.path} failed (GDAL error {int(err)})")


def build_job(layer: QgsRasterLayer, model: str, output: str, *, layer_name: str, classes=(), extent=None,
              units_per_pixel: float | None = None, bands=None, score_threshold=None, tile_size=None, overlap=None,
              device: str = "auto", temporary: bool = True, labels: bool = False, aoi: str | None = None,
              exclude: str | None = None) -> SegmentJob:
    """Everything the run needs, read from `layer` now (main thread). `extent` is in the layer's CRS; `aoi`,
    `exclude`: polygon files the engine reads (SegmentRequest)."""
    if not layer.isValid():
        raise JobError(f"layer '{layer.name()}' is not valid: check that its source still exists")
    path = local_raster_path(layer)
    export = None
    if path is None:
        export = plan_export(layer, extent, units_per_pixel)
        path, extent = export.path, None  # the exported file is the extent
    box = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()) if extent else None
    request = SegmentRequest(path, model, output, tuple(bands) if bands else None, box, score_threshold,
                             tile_size, overlap, device, aoi, exclude)
    return SegmentJob(request, layer_name, tuple(classes), temporary, labels, export)


def execute_job(job: SegmentJob, python: str, on_progress: Callable[[float], None],
                on_log: LogCallback, is_cancelled: Callable[[], bool],
                on_event: Callable[[dict], None] | None = None, gpu_names: dict[str, str] | None = None
                ) -> EngineOutcome:
    """Export (if planned) then run the engine; progress 0-100 over both; log lines with a level."""
    start = 0.0
    if job.export is not None:
        on_log(f"Writing the layer extent to {job.export.path} ({job.export.width} x {job.export.height} px)", INFO)
        feedback = QgsRasterBlockFeedback()

        def export_progress(percent: float) -> None:
            on_progress(0.1 * percent)
            if is_cancelled():
                feedback.cancel()

        feedback.progressChanged.connect(export_progress)
        if is_cancelled():
            return EngineOutcome(None, cancelled=True, error="cancelled")
        try:
            write_export(job.export, feedback)
        except JobError as exc:
            return EngineOutcome(None, cancelled=is_cancelled(), error="cancelled" if is_cancelled() else str(exc))
        start = 10.0
    return run_engine(python, job.request.engine_args(), engine_root(),
                      on_progress=lambda p: on_progress(start + (100.0 - start) * p / 100.0),
                      on_log=on_log, is_cancelled=is_cancelled, on_event=on_event, gpu_names=gpu_names)


def remove_export(job: SegmentJob) -> None:
    """Delete the temporary GeoTIFF (and its folder) written for a non-file layer, and the folder of the polygon
    layers written for --aoi/--exclude (area_layers)."""
    if job.export is not None:
        shutil.rmtree(Path(job.export.path).parent, ignore_errors=True)
    if job.area_folder:
        shutil.rmtree(job.area_folder, ignore_errors=True)
