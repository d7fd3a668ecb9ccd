"""Streaming, atomic vector output (GeoPackage, Shapefile, GeoJSON) with a fixed attribute schema.

Features are written into a private work folder next to the destination (engine.vector.partial); only
a clean close moves the result onto the destination, so a cancelled or failed run never leaves a
half-written output and an existing one untouched. Destinations:

- a new file: created with the one layer;
- an existing GeoPackage: a container; only the output's layer is added or replaced, every other layer is
  kept, atomically (engine.vector.gpkg); ``overwrite=True`` replaces the whole file instead;
- an existing Shapefile or GeoJSON: one layer each, replaced as a whole.

`check_output` runs every check on a destination before any work (the CLI and other pipelines call it too).
GeoJSON has no schema of its own: an empty GeoJSON output carries the CRS but no field list.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import fiona
from fiona.crs import CRS as FionaCRS
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from engine.errors import UserError, environment_error
from engine.vector.gpkg import (
    existing_layer,
    geopackage_problem,
    insert_layer,
    recover,
    reserved_layer_name,
    settle_wal,
)
from engine.vector.partial import clean_stale_partials, make_partial_dir

# Attribute schema, in order. ``merged`` is 0/1 because Shapefile has no boolean type.
FIELDS: tuple[tuple[str, str], ...] = (
    ("class_id", "int"),
    ("class_name", "str"),
    ("score", "float"),
    ("area_m2", "float"),
    ("n_tiles", "int"),
    ("merged", "int"),
    ("model", "str"),
    ("source", "str"),
)
_CASTS = {"int": int, "float": float, "str": str}
_DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON", ".json": "GeoJSON"}
_SHP_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qpj", ".shp.xml")
_SQLITE_SIDE_FILE = "-journal"  # SQLite writes NAME-journal (or NAME-wal) next to a GeoPackage it changes
_LAYER_NAME = re.compile(r"[^\w.-]+")


def driver_for_path(path: str | os.PathLike) -> str:
    """OGR driver name for an output path, chosen by its extension (case-insensitive)."""
    ext = Path(path).suffix.lower()
    if ext not in _DRIVERS:
        raise ValueError(f"output '{path}': unsupported extension '{ext}'; use .gpkg, .shp or .geojson")
    return _DRIVERS[ext]


def default_layer_name(model: str, raster: str | os.PathLike) -> str:
    """The GeoPackage layer of a segmentation: "<model>_<raster file stem>", letters, digits, "_", "-", "."
    only, at most 63 characters (e.g. "ssdd-ship-maskrcnn_scene")."""
    name = _LAYER_NAME.sub("_", f"{model}_{Path(raster).stem}").strip("_") or "objects"
    return name[:63]


def check_layer_name(layer: str, flag: str = "--layer") -> str:
    """`layer` if it can name a GeoPackage layer; UserError naming `flag` otherwise."""
    if not layer or not layer.strip() or any(ord(c) < 32 for c in layer) or len(layer) > 255:
        raise UserError(f"{flag} {layer!r}: give a layer name of 1 to 255 printable characters, e.g. {flag} ships")
    if reserved_layer_name(layer):
        raise UserError(f"{flag} {layer}: names starting with gpkg_, rtree_ or sqlite_ are reserved by "
                        f"GeoPackage; choose another, e.g. {flag} ships")
    return layer


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _check_directory(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise UserError(f"output '{path}': directory '{parent}' does not exist; create it or choose another path")
    if not parent.is_dir():
        raise UserError(f"output '{path}': '{parent}' is not a directory; choose another output path")
    limit = _name_max(parent)
    size = len(os.fsencode(path.name))
    extra = len(_SQLITE_SIDE_FILE) if driver_for_path(path) == "GPKG" else 0
    if size + extra > limit:
        room = f" and SQLite's '{_SQLITE_SIDE_FILE}' file next to it" if extra else ""
        raise UserError(f"output '{path}': the file name is {size} bytes, the file system allows {limit}{room}; "
                        f"choose a name of at most {limit - extra} bytes")
    if path.is_dir():
        raise UserError(f"output '{path}': is a directory; give a file name ending in .gpkg, .shp or .geojson")
    try:  # os.access is unreliable (root, ACLs, read-only mounts): really create a file
        fd, probe = tempfile.mkstemp(prefix=".rsseg-probe-", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"output '{path}': directory '{parent}' is not writable ({exc.strerror}); "
                        "choose a writable folder or fix its permissions") from None


def _check_existing(path: Path, layer: str | None, overwrite: bool) -> str | None:
    """Checks on an output file that exists already -> the layer name to write (a GeoPackage's spelling)."""
    if not os.stat(path).st_mode & 0o222:
        raise UserError(f"output '{path}': the file is write-protected; make it writable (chmod u+w) or choose "
                        "another file")
    if overwrite or driver_for_path(path) != "GPKG":
        return layer
    problem = geopackage_problem(path)
    if problem:
        raise UserError(f"output '{path}': {problem}; choose another file, or give --overwrite to replace it")
    if layer is None:
        return None
    found = existing_layer(path, layer)
    if found is None:
        return layer
    name, kind = found
    if kind != "features":
        what = "a table GeoPackage keeps for itself" if kind == "system" else f"a {kind} layer ({name})"
        raise UserError(f"output '{path}': '{layer}' is {what}, which a polygon layer would destroy; "
                        "choose another name with --layer")
    return name


def check_output(path: str | os.PathLike, layer: str | None = None, overwrite: bool = False) -> tuple[str, list[str]]:
    """Every check on an output before any work -> (the layer name to write, notes for the run's warnings).

    Refuses with a UserError (one line naming the output and the fix): unsupported extension, missing or
    unwritable folder, a folder in the way, a name too long for the file system, a write-protected file, an
    existing .gpkg that is not a GeoPackage or whose `layer` is not a polygon layer (unless `overwrite`;
    `layer` None: not known yet, the file checks only). Rolls back what a killed run left in a GeoPackage and
    removes the work folders of killed runs that wrote this output (engine.vector.partial), noted.
    """
    path = Path(path)
    try:
        driver = driver_for_path(path)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if driver != "GPKG":
        layer = path.stem
    elif layer is not None:
        check_layer_name(layer)
    _check_directory(path)
    notes = clean_stale_partials(path)
    if driver == "GPKG" and not overwrite and path.exists() and recover(path):
        notes.append(f"output '{path}': rolled back the unfinished update a killed run left in it")
    if path.exists():
        layer = _check_existing(path, layer, overwrite)
    return layer if layer is not None else path.stem, notes


def _io_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the file system or GDAL failed (not a bug of ours)."""
    errors: list[type[BaseException]] = [OSError, sqlite3.Error, fiona.errors.FionaError,
                                         fiona.errors.TransactionError]
    try:
        from fiona._err import CPLE_BaseError  # GDAL's errors as fiona raises them

        errors.append(CPLE_BaseError)
    except ImportError:  # pragma: no cover - another fiona layout
        pass
    return tuple(errors)


_IO_ERRORS = _io_errors()


class VectorWriter:
    """Context manager streaming polygon features to ``path`` atomically.

    ``crs_wkt``: the raster's CRS as WKT, or None for a layer without CRS. ``layer_name`` is used by
    GeoPackage (Shapefile and GeoJSON hold one layer named after the file); into an existing GeoPackage
    only that layer is added or replaced, unless ``overwrite`` replaces the whole file. Geometries are
    written as MultiPolygon (a Polygon is promoted). ``properties`` keys must be names from ``fields``
    (default :data:`FIELDS`, the segmentation schema); missing ones are written as null. The destination
    is checked on construction (`check_output`); ``notes`` holds what that check has to report.
    """

    def __init__(self, path: str | os.PathLike, crs_wkt: str | None, layer_name: str,
                 fields: tuple[tuple[str, str], ...] = FIELDS, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.fields = fields
        self.driver = driver_for_path(self.path)
        self.overwrite = overwrite
        self.layer_name, self.notes = check_output(self.path, layer_name, overwrite)
        self.crs_wkt = crs_wkt
        self._count = 0
        self._collection: Any = None
        self._tmp_dir: Path | None = None
        self._tmp_path: Path | None = None
        self._done = False

    @property
    def count(self) -> int:
        """Number of features written so far."""
        return self._count

    def open(self) -> VectorWriter:
        """Create the temporary output; called by ``__enter__``."""
        if self._collection is not None or self._done:
            raise RuntimeError(f"output '{self.path}': writer already opened")
        schema = {"geometry": "MultiPolygon", "properties": dict(self.fields)}
        crs = FionaCRS.from_wkt(self.crs_wkt) if self.crs_wkt else None
        kwargs: dict[str, Any] = {"layer": self.layer_name} if self.driver == "GPKG" else {}
        try:  # BaseException: a cancel (SIGTERM -> Cancelled, Ctrl-C) right after mkdir must not leave the folder
            self._tmp_dir = make_partial_dir(self.path)
            # GeoJSON records its file name; the others get a short one (a long name + "-journal" must fit)
            inner = self.path.name if self.driver == "GeoJSON" else "new" + self.path.suffix.lower()
            self._tmp_path = self._tmp_dir / inner
            self._collection = fiona.open(self._tmp_path, "w", driver=self.driver, schema=schema, crs=crs, **kwargs)
        except _IO_ERRORS as exc:
            self._cleanup()
            raise environment_error(self.path, exc) from None
        except BaseException:
            self._cleanup()
            raise
        return self

    def write(self, geometry: BaseGeometry, properties: dict[str, Any]) -> None:
        """Stream one feature. ``geometry``: non-empty shapely (Multi)Polygon in the layer CRS."""
        if self._collection is None:
            raise RuntimeError(f"output '{self.path}': writer is not open")
        if isinstance(geometry, Polygon):
            geometry = MultiPolygon([geometry])
        if not isinstance(geometry, MultiPolygon) or geometry.is_empty:
            got = getattr(geometry, "geom_type", type(geometry).__name__)
            raise ValueError(f"output '{self.path}': expected a non-empty (Multi)Polygon, got {got}")
        unknown = set(properties) - {name for name, _ in self.fields}
        if unknown:
            raise ValueError(f"output '{self.path}': unknown attribute(s) {sorted(unknown)}")
        props = {}
        for name, kind in self.fields:
            value = properties.get(name)
            props[name] = None if value is None else _CASTS[kind](value)
        try:
            self._collection.write(fiona.Feature.from_dict(geometry=mapping(geometry), properties=props))
        except _IO_ERRORS as exc:
            raise environment_error(self.path, exc) from None
        self._count += 1

    def close(self) -> None:
        """Finish the temporary file and move it onto ``path`` (see the module doc for existing files)."""
        if self._collection is None:
            raise RuntimeError(f"output '{self.path}': writer is not open")
        try:
            self._collection.close()
            self._collection = None
            self._finish()
        except _IO_ERRORS as exc:
            self.abort()
            raise environment_error(self.path, exc) from None
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        self._done = True

    def _finish(self) -> None:
        assert self._tmp_path is not None and self._tmp_dir is not None
        if self.driver == "ESRI Shapefile":
            self._move_shapefile()
        elif self.driver == "GPKG" and self.path.exists():
            if self.overwrite:
                settle_wal(self.path)
                os.replace(self._tmp_path, self.path)
            else:  # a container: add or replace our layer only, in one SQLite transaction
                _check_existing(self.path, self.layer_name, False)
                insert_layer(self.path, self._tmp_path, self.layer_name)
        else:
            os.replace(self._tmp_path, self.path)

    def abort(self) -> None:
        """Drop everything written so far; an existing destination is left untouched."""
        if self._collection is not None:
            try:
                self._collection.close()
            except Exception:  # already failing; removing the temp file is what matters
                pass
            self._collection = None
        self._cleanup()
        self._done = True

    def _move_shapefile(self) -> None:
        """Move every sidecar of the temporary Shapefile next to ``path``; drop stale old sidecars.

        Each file is replaced atomically, the set of files is not: the .shp goes last, so a reader
        never sees a new .shp with missing sidecars.
        """
        assert self._tmp_dir is not None and self._tmp_path is not None
        inner = self._tmp_path.stem
        produced = sorted((p for p in self._tmp_dir.iterdir() if p.name.startswith(inner + ".")),
                          key=lambda p: p.suffix.lower() == ".shp")
        final = {self.path.stem + p.name[len(inner):] for p in produced}
        stem = self.path.parent / self.path.stem
        for ext in _SHP_SIDECARS:
            old = Path(f"{stem}{ext}")
            if old.name not in final and old.exists():
                old.unlink()
        for p in produced:
            os.replace(p, self.path.parent / (self.path.stem + p.name[len(inner):]))

    def _cleanup(self) -> None:
        """Remove the temporary folder and whatever is in it (GPKG -wal/-journal files included)."""
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> VectorWriter:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
