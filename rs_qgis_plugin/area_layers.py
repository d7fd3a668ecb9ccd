"""The dock's "Area of interest" and "Exclude areas" polygon layers as files for `rsseg segment --aoi / --exclude`
(main thread, when the run starts). A layer the engine reads as it is goes by its source; any other (a memory
layer, a subset filter, unsaved edits, a database) is written whole to a temporary GeoPackage, whose folder the
job removes when it ends (job.remove_export)."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsProject, QgsProviderRegistry, QgsVectorFileWriter, QgsVectorLayer

from rs_qgis_plugin.job import JobError
from rs_qgis_plugin.processing.engine_run import VECTOR_FORMATS

_AS_IS = ("path", "layerName", "layerId")  # the only OGR source parts the engine's reading follows


def engine_source(layer: QgsVectorLayer) -> str | None:
    """The file the engine reads as `layer` shows it ('f.gpkg|layername=x' for one layer of a file), or None when
    the layer has to be written first."""
    if layer.providerType() != "ogr" or layer.subsetString() or layer.isModified():
        return None
    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    path = parts.get("path") or ""
    if Path(path).suffix.lower().lstrip(".") not in VECTOR_FORMATS or not os.path.isfile(path):
        return None
    if parts.get("layerId") not in (None, 0) or any(v for k, v in parts.items() if k not in _AS_IS):
        return None  # a layer by index other than the first, a subset or geometry-type filter, an archive
    name = parts.get("layerName")
    return f"{path}|layername={name}" if name else path


def write_geopackage(layer: QgsVectorLayer, path: str, label: str) -> str:
    """Write all of `layer`'s features (in its CRS) to the GeoPackage `path`; JobError names `label` when it fails."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = Path(path).stem
    error, message, written, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, path, QgsProject.instance().transformContext(), options)
    if error != QgsVectorFileWriter.NoError:
        raise JobError(f"{label}: writing layer '{layer.name()}' to the temporary GeoPackage {path} failed "
                       f"({message or int(error)}); save the layer as a GeoPackage and choose that")
    return written or path


@dataclass(frozen=True)
class AreaFiles:
    """What the engine reads for --aoi and --exclude (None: not given); `folder`: the temporary folder of the
    layers written for it (None when none was)."""

    aoi: str | None = None
    exclude: str | None = None
    folder: str | None = None


def area_files(aoi: QgsVectorLayer | None, exclude: QgsVectorLayer | None) -> AreaFiles:
    """The files for the chosen layers, writing those the engine cannot read as they are; JobError for an invalid
    layer (nothing is left behind then)."""
    files, folder = {}, None
    try:
        for key, label, layer in (("aoi", "Area of interest", aoi), ("exclude", "Exclude areas", exclude)):
            if layer is None:
                continue
            if not layer.isValid():
                raise JobError(f"{label}: layer '{layer.name()}' is not valid; check that its source still exists "
                               "or choose another layer")
            source = engine_source(layer)
            if source is None:
                folder = folder or tempfile.mkdtemp(prefix="rsseg_")
                source = write_geopackage(layer, str(Path(folder) / f"{key}.gpkg"), label)
            files[key] = source
    except BaseException:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return AreaFiles(files.get("aoi"), files.get("exclude"), folder)
