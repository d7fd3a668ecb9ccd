"""Adding or replacing one layer of an existing GeoPackage without touching its other layers.

How (and why it survives SIGKILL): the new layer is first written on its own into the writer's work
folder. To finish, a consistent copy of the container is taken with SQLite's backup API (it reads through
a write-ahead log and waits for other writers), the layer is written into that copy by GDAL (same-named
layer replaced, every other table kept: feature layers, rasters, styles, metadata), and the copy is
renamed over the container. The container is never written in place: until the rename it is exactly as
it was, whatever kills the process, and the rename is atomic. If another program changed the container
meanwhile, the copy is made again; if a program holds uncommitted writes (a non-empty write-ahead log
that cannot be checkpointed), nothing is done and the user is told to close it there.
Cost: one copy of the container per run (disk space and time grow with the container, not the result).
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import fiona

from engine.errors import UserError

_HEADER = b"SQLite format 3\x00"
_RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_")
_BUSY_TIMEOUT_S = 10.0
_ATTEMPTS = 3


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)


def geopackage_problem(path: Path) -> str | None:
    """Why the existing file `path` cannot take a new layer ("" -> None when it is a GeoPackage)."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(_HEADER))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if header != _HEADER:
        return "exists and is not a GeoPackage (not an SQLite file)"
    try:
        con = _connect_read_only(path)
        try:
            found = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'gpkg_contents'").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"exists and cannot be read as a GeoPackage ({exc})"
    return None if found else "exists and is an SQLite file but not a GeoPackage (no gpkg_contents table)"


def existing_layer(path: Path, layer: str) -> tuple[str, str] | None:
    """(name as spelled in the file, data_type) of the table `layer` names in the GeoPackage (SQLite names are
    case-insensitive), ("", "system") for a reserved or unregistered table, None when there is none."""
    con = _connect_read_only(path)
    try:
        row = con.execute("SELECT table_name, data_type FROM gpkg_contents WHERE lower(table_name) = lower(?)",
                          (layer,)).fetchone()
        if row:
            return str(row[0]), str(row[1])
        other = con.execute("SELECT name FROM sqlite_master WHERE lower(name) = lower(?)", (layer,)).fetchone()
    finally:
        con.close()
    return ("", "system") if other or layer.lower().startswith(_RESERVED_PREFIXES) else None


def reserved_layer_name(layer: str) -> bool:
    """True for names GeoPackage and SQLite keep for themselves."""
    return layer.lower().startswith(_RESERVED_PREFIXES)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def settle_wal(path: Path) -> None:
    """Fold a write-ahead log left next to `path` into it; UserError if another program keeps writing there.

    A non-empty "-wal" must never outlive a rename of the container: SQLite would replay it onto the new file.
    """
    wal = _wal(path)
    if not wal.exists() or wal.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    except sqlite3.Error:
        pass
    if wal.exists() and wal.stat().st_size > 0:
        raise UserError(f"output '{path}': another program is writing to this GeoPackage (it has an open "
                        "write-ahead log); save or close it there (QGIS: stop editing or remove its layers) "
                        "and run again")


def _fingerprint(path: Path) -> tuple[Any, ...]:
    st = path.stat()
    wal = _wal(path)
    wal_st = wal.stat() if wal.exists() else None
    return (st.st_ino, st.st_size, st.st_mtime_ns,
            None if wal_st is None else (wal_st.st_size, wal_st.st_mtime_ns))


def _snapshot(path: Path, copy: Path) -> None:
    """A consistent copy of the SQLite database `path` (through its write-ahead log, waiting for writers)."""
    src = _connect_read_only(path)
    try:
        dst = sqlite3.connect(str(copy))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _copy_layer(source: Path, target: Path, layer: str) -> None:
    """Write the only layer of the GeoPackage `source` into the GeoPackage `target` as `layer` (replacing a
    layer of that name, keeping the others)."""
    with fiona.open(source) as src:
        profile = {"driver": "GPKG", "schema": src.schema, "crs_wkt": src.crs_wkt or None}
        with fiona.open(target, "w", layer=layer, **profile) as dst:
            dst.writerecords(src)


def update_layer(container: Path, new_layer: Path, layer: str, work_dir: Path) -> None:
    """Put the layer of the GeoPackage `new_layer` into the existing GeoPackage `container` as `layer`.

    Works on a copy in `work_dir` (the container's folder) and renames it over `container` (module doc).
    OSError and GDAL errors propagate; UserError when another program keeps changing the container.
    """
    copy = work_dir / "container.gpkg"
    for _ in range(_ATTEMPTS):
        settle_wal(container)
        before = _fingerprint(container)
        try:
            _snapshot(container, copy)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                continue
            raise UserError(f"output '{container}': cannot be read as a GeoPackage ({exc}); choose another file "
                            "or give --overwrite to replace it") from None
        _copy_layer(new_layer, copy, layer)
        if _fingerprint(container) == before:
            shutil.copymode(container, copy)
            settle_wal(container)
            os.replace(copy, container)
            return
        copy.unlink(missing_ok=True)
    raise UserError(f"output '{container}': another program kept changing this GeoPackage while the layer was "
                    "being added; close it there and run again")
