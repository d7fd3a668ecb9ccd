"""Training chips from a raster and a polygon layer: GeoTIFF image chips plus COCO instance files.

An analyst's polygons (any OGR layer, any CRS) over their raster become ``OUT/images/*.tif`` (the raw
values of the selected bands, dtype and nodata kept, georeferenced) and ``OUT/all.json``,
``OUT/train.json``, ``OUT/val.json`` (COCO, RLE masks). Train with ``--coco OUT/train.json --images
OUT/images --val-coco OUT/val.json`` and no ``--bands`` (the chips hold the selected bands already): the
training pipeline then normalises the chips exactly as inference normalises tiles.

How it works:
- the raster is read on the engine's working grid (engine.raster.RasterSource): its own pixels, a
  geographic raster reprojected to UTM as at inference, or (``gsd_m``) resampled to a model's GSD;
- polygons are reprojected to that grid's CRS, mapped to pixels and rasterised per chip (a pixel
  belongs to a polygon when its centre lies inside; holes stay holes; the parts of a multipolygon,
  or of a polygon cut by the chip edge, stay one instance); pieces under ``min_object_pixels`` are
  dropped as slivers;
- chips follow engine.tiling's grid over the whole raster; with ``extent`` or ``aoi`` only the chips
  sharing area with it are used, and every polygon in a used chip is labelled (also beyond the area);
- chips whose pixels are all nodata are not written; empty chips (no object) are drawn with ``seed``
  so that at most ``empty_fraction`` of the written chips are empty;
- train/val is a seeded split by chip, done separately for object chips and empty chips. Chips
  overlap when ``overlap`` > 0, so then a val chip can share pixels with a train chip.

Classes: ``class_field`` names the attribute holding each polygon's class; categories are sorted by
name, ids from 1. ``classes`` fixes the names and their order (a base model's classes): a polygon
of a class not listed is refused with one line (append new classes to ``classes`` to train them).
Without ``class_field`` every polygon is one class: ``classes``' single name, else the layer's name.

A raster without CRS takes polygons without CRS in its pixel coordinates: x = column, and y = row
(rasterio) or y = -row (how QGIS draws such rasters; assumed when every polygon has y <= 0).

CLI (the lead wires ``rsseg chips``; flags map onto ChipOptions fields, dashes -> underscores, --gsd ->
gsd_m; comma lists -> tuples; errors raised here already name these flags):
  RASTER                        raster to cut (any GDAL raster)
  POLYGONS                      polygon layer of the objects (GeoPackage, Shapefile, GeoJSON; 'f.gpkg|layername=x')
  --out DIR (required)          output folder: DIR/images/, DIR/all.json, DIR/train.json, DIR/val.json
  --class-field FIELD           attribute with each polygon's class (default: one class)
  --classes a,b                 class names in this order, e.g. a base model's (default: sorted names found)
  --layer NAME                  layer inside POLYGONS when the file holds several
  --aoi PATH                    polygon layer: only chips touching it are written
  --extent XMIN,YMIN,XMAX,YMAX  area in the raster's CRS (write --extent=... when XMIN is negative)
  --bands 1,2,3                 1-based raster bands, as the base model reads them (e.g. 1,1,1); default all
  --tile-size 512               chip size in pixels
  --overlap 0                   pixels shared by neighbouring chips
  --empty-fraction 0.2          at most this fraction of the written chips hold no object
  --min-object-pixels 4         drop pieces of polygons covering fewer pixels of a chip
  --val-fraction 0.2            fraction of the chips in val.json (0: val.json holds no chip)
  --seed 0                      seed of the empty-chip draw and of the split
  --gsd METRES                  resample to this GSD, as segment does for a model of this GSD (default: keep)
  --gsd-tolerance 0.25          with --gsd: relative GSD difference taken as is
  --overwrite                   replace chips already in DIR
  --progress bar|jsonl|none     as the other commands; print ChipSummary (str) at the end, or its as_dict()
"""
from __future__ import annotations

import json
import math
import shutil
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pycocotools import mask as mask_utils
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from shapely import STRtree, touches
from shapely.affinity import affine_transform
from shapely.geometry import box
from shapely.ops import unary_union

from engine.data.chip_io import (
    chip_name,
    coco_file,
    empty_quota,
    finalise,
    read_area_layer,
    read_polygon_layer,
    skipped_text,
    split_source,
    split_val,
)
from engine.errors import Cancelled, UserError
from engine.raster.source import GsdPolicy, RasterSource
from engine.raster.working_grid import accepted_gsd_range
from engine.tiling import Tile, extent_to_window, tile_grid

_OUTPUTS = ("images", "all.json", "train.json", "val.json")
_QGIS_NO_GEOTRANSFORM = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # QGIS draws rasters without one with y = -row


@dataclass(frozen=True)
class ChipOptions:
    """How to cut chips; see the module docstring for the matching CLI arguments.

    Sizes in pixels of the working grid; ``extent`` in the raster's CRS units; fractions in [0, 1].
    """

    class_field: str | None = None
    classes: tuple[str, ...] | None = None
    layer: str | None = None
    aoi: str | None = None
    extent: tuple[float, float, float, float] | None = None
    bands: tuple[int, ...] | None = None
    tile_size: int = 512
    overlap: int = 0
    empty_fraction: float = 0.2
    min_object_pixels: int = 4
    val_fraction: float = 0.2
    seed: int = 0
    gsd_m: float | None = None
    gsd_tolerance: float = 0.25
    overwrite: bool = False


@dataclass(frozen=True)
class ChipSummary:
    """What make_chips wrote. ``instances`` per class in category order; ``skipped``: polygons per reason."""

    out_dir: str
    chips: int
    empty_chips: int
    train_chips: int
    val_chips: int
    classes: tuple[str, ...]
    instances: tuple[tuple[str, int], ...]
    skipped: tuple[tuple[str, int], ...]
    slivers: int  # pieces under min_object_pixels dropped from chips (their polygon may be kept elsewhere)
    nodata_chips: int  # chips not written because every pixel is nodata
    grid: str  # how the working grid differs from the raster's ("" when it does not)

    def lines(self) -> list[str]:
        """One or two lines for people: counts, then what was dropped (when anything was)."""
        per_class = ", ".join(f"{n} {name}" for name, n in self.instances)
        first = (f"{self.chips} chips ({self.empty_chips} empty; {self.train_chips} train, {self.val_chips} val) "
                 f"with {sum(n for _, n in self.instances)} objects ({per_class}) -> {self.out_dir}")
        dropped = [f"{n} polygons {why}" for why, n in self.skipped]
        if self.slivers:
            dropped.append(f"{self.slivers} slivers")
        if self.nodata_chips:
            dropped.append(f"{self.nodata_chips} all-nodata chips")
        return [first] + (["skipped: " + "; ".join(dropped)] if dropped else [])

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["instances"], d["skipped"] = dict(self.instances), dict(self.skipped)
        return d


@dataclass(frozen=True)
class _Chip:
    """A planned chip: its window and its annotations (``polygon``, ``category_id``, RLE, area px, bbox)."""

    tile: Tile
    annotations: tuple[dict[str, Any], ...]


def make_chips(raster: str | Path, polygons: str | Path, out_dir: str | Path, options: ChipOptions = ChipOptions(),
               progress: Callable[[int, int], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> ChipSummary:
    """Cut ``raster`` into chips labelled by ``polygons``; write them and the COCO files under ``out_dir``.

    ``progress(done, total)`` is called after each chip written; ``cancelled()`` is polled per chip and
    a True raises engine.errors.Cancelled, leaving ``out_dir`` as it was. Everything is written into a
    temporary folder inside ``out_dir`` and renamed into place at the end. Raises UserError for bad
    input (missing files, bands out of range, unknown class field, no polygon inside the raster, ...).
    """
    o = options
    _check_options(o)
    out = Path(out_dir)
    _check_out_dir(out, o, [raster, split_source(polygons)[0]] + ([split_source(o.aoi)[0]] if o.aoi else []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with _open_raster(raster, o) as src:
            return _run(src, polygons, out, o, progress, cancelled or (lambda: False))


def _check_options(o: ChipOptions) -> None:
    """Option values a user can get wrong -> UserError naming the CLI flag."""
    if o.tile_size < 16:
        raise UserError(f"--tile-size {o.tile_size}: give at least 16 pixels, e.g. --tile-size 512")
    if not 0 <= o.overlap < o.tile_size:
        raise UserError(f"--overlap {o.overlap}: give 0 to {o.tile_size - 1} pixels (less than --tile-size)")
    if not 0.0 <= o.empty_fraction <= 1.0:
        raise UserError(f"--empty-fraction {o.empty_fraction}: give a fraction between 0 and 1, e.g. 0.2")
    if not 0.0 <= o.val_fraction < 1.0:
        raise UserError(f"--val-fraction {o.val_fraction}: give a fraction from 0 up to (not including) 1, e.g. 0.2")
    if o.min_object_pixels < 1:
        raise UserError(f"--min-object-pixels {o.min_object_pixels}: give at least 1")
    if o.aoi and o.extent:
        raise UserError("--aoi and --extent: give one of them, not both")
    if o.extent is not None and not (o.extent[0] < o.extent[2] and o.extent[1] < o.extent[3]):
        raise UserError(f"--extent {','.join(f'{v:g}' for v in o.extent)}: needs XMIN < XMAX and YMIN < YMAX")
    if o.gsd_m is not None and not o.gsd_m > 0:
        raise UserError(f"--gsd {o.gsd_m}: give the model's ground sample distance in metres, e.g. --gsd 10")
    if o.classes is not None:
        names = [c.strip() for c in o.classes]
        if not names or not all(names) or len(set(names)) != len(names):
            raise UserError(f"--classes {','.join(o.classes)}: give distinct, non-empty class names, e.g. ship,tank")
        if o.class_field is None and len(names) > 1:
            raise UserError(f"--classes {','.join(names)}: several classes need --class-field to say which "
                            "class each polygon is")


def _check_out_dir(out: Path, o: ChipOptions, inputs: list[str | Path]) -> None:
    """The output folder is not a file, holds no chips (unless overwrite) and holds none of the inputs."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}': is a file; give a folder")
    targets = [(out / n).resolve() for n in _OUTPUTS]
    for path in inputs:
        p = Path(path).resolve()
        if any(p == t or t in p.parents for t in targets):
            raise UserError(f"--out '{out}': would overwrite the input '{path}'; choose another folder")
    there = [name for name in _OUTPUTS if (out / name).exists()]
    if there and not o.overwrite:
        raise UserError(f"--out '{out}': already holds chips ({', '.join(there)}); choose an empty folder "
                        "or pass --overwrite")


def _open_raster(raster: str | Path, o: ChipOptions) -> RasterSource:
    """The raster on its working grid: own pixels (geographic -> UTM), or resampled to ``gsd_m``."""
    if o.gsd_m is not None:
        policy = GsdPolicy(o.gsd_m, accepted_gsd_range(o.gsd_m, None, o.gsd_tolerance), resample=True)
    else:
        policy = GsdPolicy(1.0, (0.0, math.inf), resample=False)
    return RasterSource(raster, list(o.bands) if o.bands else None, policy, o.extent)


def _run(src: RasterSource, polygons: str | Path, out: Path, o: ChipOptions,
         progress: Callable[[int, int], None] | None, cancelled: Callable[[], bool]) -> ChipSummary:
    work = src.work
    layer = read_polygon_layer(polygons, work.crs_wkt, o.class_field, o.layer)
    if not layer.geometries:
        why = skipped_text(layer)
        raise UserError(f"polygons '{layer.path}': holds no usable polygon ({why}); give a layer of polygons"
                        + (f" with a value in '{o.class_field}'" if o.class_field else ""))
    to_pixels = _to_pixels(work, layer.geometries)
    geoms = np.array([affine_transform(g, to_pixels) for g in layer.geometries], dtype=object)
    tiles, where = _tiles(src, o)
    candidates = _candidates(tiles, geoms, cancelled)
    touched = sorted({int(i) for idx in candidates for i in idx})
    if not touched:
        raise UserError(f"polygons '{layer.path}': none of its {len(geoms)} polygons lies inside {where} of "
                        f"'{src.path}'; check that the layer covers the raster (and its CRS)")
    classes = _categories(layer.name, [layer.classes[i] for i in touched], o)
    category = {name: k + 1 for k, name in enumerate(classes)}
    class_ids = [category.get(c or classes[0], 0) for c in layer.classes]
    chips, empties, slivers, pieces = _plan(tiles, candidates, geoms, class_ids, o.min_object_pixels, cancelled)
    if not chips:
        raise UserError(f"polygons '{layer.path}': no polygon covers {o.min_object_pixels} or more pixels of "
                        f"a chip of '{src.path}'; lower --min-object-pixels or check the polygons")
    staging = out / f".chips-{uuid.uuid4().hex[:8]}.partial"
    try:
        (staging / "images").mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"--out '{out}': cannot be written ({exc.strerror}); choose a writable folder") from None
    try:
        written, empty, nodata = _write_chips(src, chips, empties, staging / "images", o, progress, cancelled)
        if not written:
            raise UserError(f"raster '{src.path}': every chip holding a polygon is nodata; check --bands and "
                            "the raster's nodata value")
        chips_out = sorted(written + empty, key=lambda c: (c.tile.row_off, c.tile.col_off))
        empty_set = {id(c) for c in empty}
        groups = [[c for c in chips_out if id(c) not in empty_set], [c for c in chips_out if id(c) in empty_set]]
        val = split_val(groups, o.val_fraction, o.seed)
        info = {"description": "rsseg chips", "raster": str(src.path), "polygons": str(layer.path),
                "crs": work.crs_wkt, "bands": src.bands, "tile_size": o.tile_size, "overlap": o.overlap,
                "seed": o.seed, "val_fraction": o.val_fraction, "class_field": o.class_field}
        for name, keep in (("all", lambda c: True), ("train", lambda c: id(c) not in val),
                           ("val", lambda c: id(c) in val)):
            coco = coco_file([c for c in chips_out if keep(c)], classes, src.path.stem, {**info, "split": name})
            (staging / f"{name}.json").write_text(json.dumps(coco))
        finalise(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    kept = {a["polygon"] for c in written for a in c.annotations}
    skipped = Counter(dict(layer.skipped))
    touched_set = set(touched)
    for i in range(len(geoms)):
        if i not in touched_set:
            skipped[f"outside {where}"] += 1
        elif i not in pieces:
            skipped[f"under {o.min_object_pixels} pixels in every chip"] += 1
        elif i not in kept:
            skipped["only over nodata"] += 1
    instances = Counter(a["category_id"] for c in written for a in c.annotations)
    return ChipSummary(
        out_dir=str(out), chips=len(chips_out), empty_chips=len(empty), train_chips=len(chips_out) - len(val),
        val_chips=len(val), classes=tuple(classes),
        instances=tuple((name, instances.get(k + 1, 0)) for k, name in enumerate(classes)),
        skipped=tuple((why, n) for why, n in skipped.items() if n), slivers=slivers, nodata_chips=nodata,
        grid=src.plan.reason)


def _to_pixels(work: Any, geometries: tuple) -> list[float]:
    """shapely affine_transform parameters mapping the working grid's map coordinates to pixel (col, row)."""
    transform = work.transform
    if work.crs_wkt is None and transform == Affine.identity() and geometries:
        if max(g.bounds[3] for g in geometries) <= 0:
            transform = _QGIS_NO_GEOTRANSFORM
    inv = ~transform
    return [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f]


def _tiles(src: RasterSource, o: ChipOptions) -> tuple[list[Tile], str]:
    """The chip windows of the raster's tile grid that share area with the raster, ``extent`` or ``aoi``,
    and the name of that area for messages."""
    work = src.work
    tiles = tile_grid(work.height, work.width, o.tile_size, o.overlap)
    if o.extent is not None:
        window = extent_to_window(src.extent_in_work_crs(o.extent), work.transform, work.height, work.width)
        if window is None:
            raise UserError(f"--extent {','.join(f'{v:g}' for v in o.extent)}: does not overlap raster "
                            f"'{src.path}'; give an extent in the raster's CRS inside its bounds")
        row0, col0, height, width = window
        area = box(col0, row0, col0 + width, row0 + height)
        return [t for t in tiles if area.intersection(_box(t)).area > 0], "--extent"
    if o.aoi:
        layer = read_area_layer(o.aoi, work.crs_wkt, "--aoi")
        aoi = affine_transform(unary_union(list(layer.geometries)), _to_pixels(work, layer.geometries))
        kept = [t for t in tiles if aoi.intersection(_box(t)).area > 0]
        if not kept:
            raise UserError(f"--aoi '{o.aoi}': does not overlap raster '{src.path}'; check the layer and its CRS")
        return kept, "--aoi"
    return tiles, "the raster"


def _box(t: Tile):
    """A tile's window as a shapely box in pixel coordinates (x = column, y = row)."""
    return box(t.col_off, t.row_off, t.col_off + t.width, t.row_off + t.height)


def _candidates(tiles: list[Tile], geoms: np.ndarray, cancelled: Callable[[], bool]) -> list[np.ndarray]:
    """Per tile, the indices of the polygons sharing area with its window."""
    if not len(geoms):
        return [np.zeros(0, int) for _ in tiles]
    tree = STRtree(geoms)
    out = []
    for t in tiles:
        if cancelled():
            raise Cancelled()
        b = _box(t)
        idx = tree.query(b, predicate="intersects")
        out.append(idx[~touches(geoms[idx], b)] if len(idx) else idx)
    return out


def _categories(layer_name: str, found: list[str], o: ChipOptions) -> list[str]:
    """Category names in id order (ids from 1): ``classes`` as given, else the found names sorted."""
    if o.class_field is None:
        return [o.classes[0].strip()] if o.classes else [layer_name or "object"]
    if o.classes is None:
        return sorted(set(found))
    classes = [c.strip() for c in o.classes]
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UserError(f"--classes {','.join(classes)}: the layer's field '{o.class_field}' also holds "
                        f"{', '.join(unknown)}; add them to --classes (after the base model's) or remove "
                        "those polygons")
    return classes


def _plan(tiles: list[Tile], candidates: list[np.ndarray], geoms: np.ndarray, class_ids: list[int],
          min_pixels: int, cancelled: Callable[[], bool]) -> tuple[list[_Chip], list[_Chip], int, set[int]]:
    """Rasterise each tile's polygons -> (object chips, empty chips, slivers dropped, polygons with a kept piece).

    A tile whose polygons are all slivers is neither: it is not written (it is not truly empty).
    """
    chips, empties, slivers, pieces = [], [], 0, set()
    for t, idx in zip(tiles, candidates):
        if cancelled():
            raise Cancelled()
        if not len(idx):
            empties.append(_Chip(t, ()))
            continue
        to_global = Affine(1.0, 0.0, t.col_off, 0.0, 1.0, t.row_off)  # chip pixel -> raster pixel
        anns = []
        for i in sorted(int(i) for i in idx):
            mask = rasterize([(geoms[i], 1)], out_shape=(t.height, t.width), transform=to_global, fill=0,
                             dtype="uint8")
            area = int(mask.sum())
            if area < min_pixels:
                slivers += 1
                continue
            rle = mask_utils.encode(np.asfortranarray(mask))
            bbox = [float(v) for v in mask_utils.toBbox(rle)]
            anns.append({"polygon": i, "category_id": class_ids[i], "area": float(area), "bbox": bbox,
                         "segmentation": {"size": [t.height, t.width], "counts": rle["counts"].decode("ascii")}})
            pieces.add(i)
        if anns:
            chips.append(_Chip(t, tuple(anns)))
    return chips, empties, slivers, pieces


def _write_chips(src: RasterSource, chips: list[_Chip], empties: list[_Chip], folder: Path, o: ChipOptions,
                 progress: Callable[[int, int], None] | None, cancelled: Callable[[], bool]
                 ) -> tuple[list[_Chip], list[_Chip], int]:
    """Write object chips, then seeded empty chips up to the quota -> (written, empty written, nodata skipped)."""
    total = len(chips) + empty_quota(len(chips), o.empty_fraction, len(empties))
    done, nodata = 0, 0
    written: list[_Chip] = []
    for chip in chips:
        if _write_one(src, chip, folder, cancelled):
            written.append(chip)
        else:
            nodata += 1
            total -= 1
        done = len(written)
        if progress:
            progress(done, total)
    quota = empty_quota(len(written), o.empty_fraction, len(empties))
    total = len(written) + quota
    empty: list[_Chip] = []
    order = np.random.default_rng([o.seed, 1]).permutation(len(empties))
    for k in order:
        if len(empty) >= quota:
            break
        if _write_one(src, empties[int(k)], folder, cancelled):
            empty.append(empties[int(k)])
            if progress:
                progress(len(written) + len(empty), total)
        else:
            nodata += 1
    if progress and len(written) + len(empty) < total:
        progress(len(written) + len(empty), len(written) + len(empty))
    return written, empty, nodata


def _write_one(src: RasterSource, chip: _Chip, folder: Path, cancelled: Callable[[], bool]) -> bool:
    """Write one chip as a GeoTIFF of raw values; False (nothing written) when all its pixels are nodata."""
    if cancelled():
        raise Cancelled()
    t, work = chip.tile, src.work
    pixels, valid = src.read_valid(t.row_off, t.col_off, t.height, t.width)
    if valid is not None and not valid.any():
        return False
    profile: dict[str, Any] = {"driver": "GTiff", "height": t.height, "width": t.width, "count": pixels.shape[0],
                               "dtype": pixels.dtype.name, "nodata": src.info.nodata, "compress": "deflate"}
    if work.crs_wkt is not None or work.transform != Affine.identity():
        a = work.transform  # the chip's top-left pixel -> map (spelled out: affine 3 deprecates `*`)
        profile["transform"] = Affine(a.a, a.b, a.c + a.a * t.col_off + a.b * t.row_off,
                                      a.d, a.e, a.f + a.d * t.col_off + a.e * t.row_off)
        if work.crs_wkt is not None:
            profile["crs"] = work.crs_wkt
    path = folder / chip_name(src.path.stem, t)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return True


__all__ = ["ChipOptions", "ChipSummary", "make_chips"]
