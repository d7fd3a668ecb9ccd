"""Streaming, atomic vector output (GeoPackage, Shapefile, GeoJSON) with a fixed attribute schema.

Features are written into a temporary folder next to the destination; only a clean close renames
the result onto the destination, so a cancelled or failed run never leaves a half-written output.
GeoJSON has no schema of its own: an empty GeoJSON output carries the CRS but no field list.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import fiona
from fiona.crs import CRS as FionaCRS
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

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


def driver_for_path(path: str | os.PathLike) -> str:
    """OGR driver name for an output path, chosen by its extension (case-insensitive)."""
    ext = Path(path).suffix.lower()
    if ext not in _DRIVERS:
        raise ValueError(f"output '{path}': unsupported extension '{ext}'; use .gpkg, .shp or .geojson")
    return _DRIVERS[ext]


def _check_destination(path: Path) -> None:
    """Fail fast, before any work, when ``path`` cannot be written."""
    parent = path.parent
    if not parent.exists():
        raise ValueError(
            f"output '{path}': directory '{parent}' does not exist; create it or choose another path"
        )
    if not parent.is_dir():
        raise ValueError(f"output '{path}': '{parent}' is not a directory; choose another output path")
    if path.is_dir():
        raise ValueError(
            f"output '{path}': is a directory; give a file name ending in .gpkg, .shp or .geojson"
        )
    try:  # os.access is unreliable (root, ACLs, read-only mounts): really create a file
        fd, probe = tempfile.mkstemp(prefix=".rsseg-probe-", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise PermissionError(
            f"output '{path}': directory '{parent}' is not writable ({exc.strerror}); "
            "choose a writable folder or fix its permissions"
        ) from None


class VectorWriter:
    """Context manager streaming polygon features to ``path`` atomically.

    ``crs_wkt``: the raster's CRS as WKT, or None for a layer without CRS. ``layer_name`` is used by
    GeoPackage (Shapefile and GeoJSON hold one layer named after the file). Geometries are written
    as MultiPolygon (a Polygon is promoted). ``properties`` keys must be names from ``fields`` (default
    :data:`FIELDS`, the segmentation schema); missing ones are written as null.
    """

    def __init__(self, path: str | os.PathLike, crs_wkt: str | None, layer_name: str,
                 fields: tuple[tuple[str, str], ...] = FIELDS) -> None:
        self.path = Path(path)
        self.fields = fields
        self.driver = driver_for_path(self.path)
        _check_destination(self.path)
        self.crs_wkt = crs_wkt
        self.layer_name = layer_name
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
        # A private folder next to the destination (same filesystem, so the final move is a rename);
        # the file inside has the final name, which some formats record (GeoJSON "name").
        self._tmp_dir = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial"
        self._tmp_path = self._tmp_dir / self.path.name
        schema = {"geometry": "MultiPolygon", "properties": dict(self.fields)}
        crs = FionaCRS.from_wkt(self.crs_wkt) if self.crs_wkt else None
        kwargs: dict[str, Any] = {"layer": self.layer_name} if self.driver == "GPKG" else {}
        try:  # BaseException: a cancel (SIGTERM -> Cancelled, Ctrl-C) right after mkdir must not leave the folder
            self._tmp_dir.mkdir()
            self._collection = fiona.open(
                self._tmp_path, "w", driver=self.driver, schema=schema, crs=crs, **kwargs
            )
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
        self._collection.write(fiona.Feature.from_dict(geometry=mapping(geometry), properties=props))
        self._count += 1

    def close(self) -> None:
        """Finish the temporary file and move it onto ``path`` (replacing an existing output)."""
        if self._collection is None:
            raise RuntimeError(f"output '{self.path}': writer is not open")
        try:
            self._collection.close()
            self._collection = None
            if self.driver == "ESRI Shapefile":
                self._move_shapefile()
            else:
                os.replace(self._tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        self._done = True

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
        assert self._tmp_dir is not None
        produced = sorted(self._tmp_dir.iterdir(), key=lambda p: p.suffix.lower() == ".shp")
        names = {p.name for p in produced}
        stem = self.path.parent / self.path.stem
        for ext in _SHP_SIDECARS:
            old = Path(f"{stem}{ext}")
            if old.name not in names and old.exists():
                old.unlink()
        for p in produced:
            os.replace(p, self.path.parent / p.name)

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
