"""Adding or replacing one layer of an existing GeoPackage without touching its other layers.

How, and why nothing is lost whatever happens: the new layer is first written on its own, by GDAL, into
a temporary GeoPackage in the writer's work folder. It is then copied into the container inside one
SQLite transaction (`insert_layer`): the same-named layer (names compare case-insensitively, as SQLite's)
is dropped with its spatial index and metadata rows, the new table, its R-tree index and triggers are
created from the temporary file's own SQL, its rows and metadata rows copied, its CRS matched to or added
to the container's. Every other table (feature layers, rasters, QGIS styles, metadata) is never touched.
SQLite makes the transaction atomic: a failure or cancel rolls it back, and after SIGKILL or a power cut
the journal it leaves is rolled back by the next program that opens the container (`recover`, at the next
run's check, does it at once). The container stays the same file, so QGIS keeps it open safely and sees
the new layer when it re-reads; a program writing to it at that moment makes the run wait (up to 10 s),
then fail with a one-line reason.
"""
from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from engine.errors import UserError

_HEADER = b"SQLite format 3\x00"
_RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_")
_BUSY_TIMEOUT_S = 10.0
_META_TABLES = ("gpkg_geometry_columns", "gpkg_extensions", "gpkg_ogr_contents", "gpkg_data_columns",
                "gpkg_metadata_reference", "gpkg_contents")  # rows keyed by table_name, children first


def _q(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)


def reserved_layer_name(layer: str) -> bool:
    """True for names GeoPackage and SQLite keep for themselves."""
    return layer.lower().startswith(_RESERVED_PREFIXES)


def recover(path: Path) -> bool:
    """Roll back what a killed writer left in `path` (a hot "-journal"): a read-write open does it. True if there
    was one."""
    journal = path.with_name(path.name + "-journal")
    if not journal.exists() or journal.stat().st_size == 0:
        return False
    try:
        con = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return True


def geopackage_problem(path: Path) -> str | None:
    """Why the existing file `path` cannot take a new layer (None when it is a GeoPackage)."""
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
        return _existing(con, "main", layer)
    finally:
        con.close()


def _existing(con: sqlite3.Connection, schema: str, layer: str) -> tuple[str, str] | None:
    row = con.execute(f"SELECT table_name, data_type FROM {schema}.gpkg_contents WHERE lower(table_name) = lower(?)",
                      (layer,)).fetchone()
    if row:
        return str(row[0]), str(row[1])
    other = con.execute(f"SELECT name FROM {schema}.sqlite_master WHERE lower(name) = lower(?)", (layer,)).fetchone()
    return ("", "system") if other or reserved_layer_name(layer) else None


def _has_table(con: sqlite3.Connection, schema: str, name: str) -> bool:
    return con.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?",
                       (name,)).fetchone() is not None


def _columns(con: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [row[1] for row in con.execute(f"PRAGMA {schema}.table_info({_q(table)})")]


def settle_wal(path: Path) -> None:
    """Before `path` is replaced as a whole (--overwrite): fold its write-ahead log into it; UserError if another
    program keeps writing there. A non-empty "-wal" must never outlive a replaced file: SQLite would replay it
    onto the new one."""
    wal = path.with_name(path.name + "-wal")
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
        raise UserError(f"output '{path}': another program is writing to this GeoPackage; save or close it there "
                        "(QGIS: stop editing or remove its layers) and run again")


def _drop_layer(con: sqlite3.Connection, name: str) -> None:
    """Drop the feature layer `name` of the container: table (with its triggers), R-tree index, metadata rows."""
    geom = con.execute("SELECT column_name FROM main.gpkg_geometry_columns WHERE table_name = ?", (name,)).fetchone()
    if geom and _has_table(con, "main", f"rtree_{name}_{geom[0]}"):
        con.execute(f"DROP TABLE main.{_q(f'rtree_{name}_{geom[0]}')}")
    if _has_table(con, "main", name):
        con.execute(f"DROP TABLE main.{_q(name)}")
    for meta in _META_TABLES:
        if _has_table(con, "main", meta):
            con.execute(f"DELETE FROM main.{meta} WHERE lower(table_name) = lower(?)", (name,))


def _same_srs(a: tuple, b: tuple) -> bool:
    """Two (organization, organization_coordsys_id, definition) rows mean the same CRS."""
    return (str(a[0]).upper(), a[1]) == (str(b[0]).upper(), b[1]) or a[2] == b[2]


def _container_srs(con: sqlite3.Connection, src_id: int) -> int:
    """The container's srs_id for the temporary file's CRS `src_id`, added to the container when missing."""
    row = con.execute("SELECT organization, organization_coordsys_id, definition FROM src.gpkg_spatial_ref_sys "
                      "WHERE srs_id = ?", (src_id,)).fetchone()
    if row is None:
        return src_id
    same = con.execute("SELECT organization, organization_coordsys_id, definition FROM main.gpkg_spatial_ref_sys "
                       "WHERE srs_id = ?", (src_id,)).fetchone()
    if same is not None and _same_srs(same, row):
        return src_id
    for srs_id, *other in con.execute("SELECT srs_id, organization, organization_coordsys_id, definition "
                                      "FROM main.gpkg_spatial_ref_sys"):
        if str(row[0]).upper() != "NONE" and _same_srs(tuple(other), row):
            return int(srs_id)
    new_id = src_id if same is None else int(con.execute(
        "SELECT max(max(srs_id) + 1, 100000) FROM main.gpkg_spatial_ref_sys").fetchone()[0])
    main_cols = _columns(con, "main", "gpkg_spatial_ref_sys")
    cols = [c for c in _columns(con, "src", "gpkg_spatial_ref_sys") if c in main_cols]
    values = ", ".join("?" if c == "srs_id" else _q(c) for c in cols)
    con.execute(f"INSERT INTO main.gpkg_spatial_ref_sys ({', '.join(map(_q, cols))}) SELECT {values} "
                f"FROM src.gpkg_spatial_ref_sys WHERE srs_id = ?", (new_id, src_id))
    return new_id


def _with_srs(blob: bytes | None, srs_id: int) -> bytes | None:
    """A GeoPackage geometry blob with its header's srs_id replaced (byte order from its flags)."""
    if blob is None or len(blob) < 8 or blob[:2] != b"GP":
        return blob
    return blob[:4] + struct.pack("<i" if blob[3] & 1 else ">i", srs_id) + blob[8:]


def _copy_rows(con: sqlite3.Connection, table: str, geom: str, srs_id: int, src_srs: int) -> None:
    cols = _columns(con, "src", table)
    if srs_id == src_srs:
        con.execute(f"INSERT INTO main.{_q(table)} SELECT * FROM src.{_q(table)}")
        return
    con.create_function("rsseg_with_srs", 2, _with_srs, deterministic=True)
    select = ", ".join(f"rsseg_with_srs({_q(c)}, {int(srs_id)})" if c == geom else _q(c) for c in cols)
    con.execute(f"INSERT INTO main.{_q(table)} ({', '.join(map(_q, cols))}) SELECT {select} FROM src.{_q(table)}")


def _copy_metadata(con: sqlite3.Connection, table: str, srs_id: int) -> None:
    """The temporary file's metadata rows of `table` into the container's tables (created when missing)."""
    for meta in ("gpkg_extensions", "gpkg_ogr_contents"):
        if _has_table(con, "src", meta) and not _has_table(con, "main", meta):
            sql = con.execute("SELECT sql FROM src.sqlite_master WHERE name = ?", (meta,)).fetchone()[0]
            con.execute(sql)
    identifier = con.execute("SELECT identifier FROM src.gpkg_contents WHERE table_name = ?", (table,)).fetchone()[0]
    if con.execute("SELECT 1 FROM main.gpkg_contents WHERE identifier = ?", (identifier,)).fetchone():
        identifier = None  # identifiers are unique: another layer shows that name already
    con.execute("INSERT INTO main.gpkg_contents (table_name, data_type, identifier, description, last_change, min_x, "
                "min_y, max_x, max_y, srs_id) SELECT table_name, data_type, ?, description, last_change, min_x, min_y, "
                "max_x, max_y, ? FROM src.gpkg_contents WHERE table_name = ?", (identifier, srs_id, table))
    con.execute("INSERT INTO main.gpkg_geometry_columns (table_name, column_name, geometry_type_name, srs_id, z, m) "
                "SELECT table_name, column_name, geometry_type_name, ?, z, m FROM src.gpkg_geometry_columns "
                "WHERE table_name = ?", (srs_id, table))
    for meta in ("gpkg_extensions", "gpkg_ogr_contents"):
        if _has_table(con, "src", meta):
            cols = ", ".join(_q(c) for c in _columns(con, "src", meta) if c in _columns(con, "main", meta))
            con.execute(f"INSERT INTO main.{meta} ({cols}) SELECT {cols} FROM src.{meta} WHERE table_name = ?",
                        (table,))


def _replace_layer(con: sqlite3.Connection, layer: str) -> None:
    table, kind = con.execute("SELECT table_name, data_type FROM src.gpkg_contents").fetchone()
    if kind != "features" or table != layer:
        raise ValueError(f"temporary GeoPackage holds {kind} layer '{table}', expected features '{layer}'")
    geom, src_srs = con.execute("SELECT column_name, srs_id FROM src.gpkg_geometry_columns WHERE table_name = ?",
                                (table,)).fetchone()
    old = _existing(con, "main", layer)
    if old is not None:
        if old[1] != "features":
            raise UserError(f"'{layer}' is a {old[1]} layer of this GeoPackage, which a polygon layer would destroy; "
                            "choose another name with --layer")
        _drop_layer(con, old[0])
    srs_id = _container_srs(con, src_srs)
    schema = dict(con.execute("SELECT name, sql FROM src.sqlite_master WHERE type = 'table'").fetchall())
    con.execute(schema[table])
    _copy_rows(con, table, geom, srs_id, src_srs)
    rtree = f"rtree_{table}_{geom}"
    if rtree in schema:
        con.execute(schema[rtree])
        con.execute(f"INSERT INTO main.{_q(rtree)} SELECT * FROM src.{_q(rtree)}")
    _copy_metadata(con, table, srs_id)
    # triggers last: created after the rows, they do not fire for them (they call GDAL's ST_* functions)
    for (sql,) in con.execute("SELECT sql FROM src.sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                              (table,)).fetchall():
        con.execute(sql)


def insert_layer(container: Path, source: Path, layer: str) -> None:
    """Copy the one feature layer `layer` of the GeoPackage `source` into the GeoPackage `container`, replacing a
    layer of that name and keeping every other table, in one SQLite transaction (module doc).

    UserError when another program keeps the container locked or `layer` names a non-feature table there.
    """
    con = sqlite3.connect(str(container), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        con.execute("ATTACH DATABASE ? AS src", (str(source),))
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise UserError(f"output '{container}': another program is writing to this GeoPackage ({exc}); save "
                            "or stop editing there and run again") from None
        try:
            _replace_layer(con, layer)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:  # SQLite rolled back itself (disk full): the container is as it was
                    pass
            raise
    except UserError as exc:
        if str(exc).startswith("output"):
            raise
        raise UserError(f"output '{container}': {exc}") from None
    finally:
        con.close()
