"""Build the bundled demo scene from the four HRSID SAR sample tiles.

Outputs (in ``--out-dir``, default ``data/demo``):

- ``hrsid_demo_scene.tif``: the four 800 x 800 HRSID tiles (sorted by file name) mosaicked 2 x 2,
  row-major (tile 1 upper left, 2 upper right, 3 lower left, 4 lower right), into one 1600 x 1600
  single-band uint8 GeoTIFF (SAR amplitude; the PNGs are 3-channel copies of one band, the first
  channel is kept). Deflate compression with horizontal predictor, internal 256 x 256 tiles,
  internal overviews 2, 4 (average).
- ``hrsid_demo_truth.gpkg``: ground truth, one feature per ship instance (layer ``ships``,
  attributes ``instance`` (1..N over the mosaic), ``tile``, ``class_id`` (1), ``class_name``
  (``ship``)), polygonised from the ``*_instance_id_RGB.png`` masks: each distinct non-black RGB
  colour of a tile is one instance; its pixels become one (Multi)Polygon in the scene's CRS.
- ``LICENSE-HRSID.txt`` (the HRSID licence, GPL-3.0) and ``README.md`` (provenance).

Nominal georeference (HRSID publishes no georeference for its tiles; this one is made up so
GIS software and the engine have a projected CRS to work in; it is NOT the real location):

- CRS EPSG:32631 (WGS 84 / UTM zone 31N)
- 1.0 m pixels (HRSID's tiles are 0.5-3 m; 1 m is stated as nominal)
- upper-left corner at easting 500000, northing 5700000 (open sea off the Belgian/Dutch coast,
  about 3.0 E, 51.45 N)

The build is deterministic and idempotent; every output is written to a temporary file next to
its destination and renamed onto it, so an interrupted run never leaves a half-written file.

Usage (from the repository root)::

    .venv/bin/python -m data.demo.build_demo_scene [--src ../shared/data/hrsid_samples] [--out-dir data/demo]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent  # data/demo: the builder lives beside what it builds
DEFAULT_SRC = HERE.parents[2] / "shared" / "data" / "hrsid_samples"  # ../shared/data beside the checkout
DEFAULT_OUT_DIR = HERE

SCENE_NAME = "hrsid_demo_scene.tif"
TRUTH_NAME = "hrsid_demo_truth.gpkg"
LICENSE_NAME = "LICENSE-HRSID.txt"
README_NAME = "README.md"

CRS_EPSG = 32631
PIXEL_SIZE_M = 1.0
ORIGIN_EASTING = 500000.0
ORIGIN_NORTHING = 5700000.0
TILE_SIZE = 800
GRID = 2  # 2 x 2 mosaic
BLOCK = 256
OVERVIEWS = (2, 4)
GEOREF_NOTE = (
    "nominal georeference, not the real location: EPSG:32631 (WGS 84 / UTM 31N), 1.0 m pixels "
    "(HRSID tiles are 0.5-3 m), upper-left corner E 500000 N 5700000"
)
REBUILD_COMMAND = "python -m data.demo.build_demo_scene"


def find_tiles(src: Path) -> list[Path]:
    """The four HRSID image tiles in ``src`` (sorted by name), without their mask companions."""
    if not src.is_dir():
        raise SystemExit(f"--src '{src}': not a directory; point it at the hrsid_samples folder")
    tiles = sorted(p for p in src.glob("*.png") if "_instance_" not in p.name)
    if len(tiles) != GRID * GRID:
        raise SystemExit(f"--src '{src}': expected {GRID * GRID} HRSID image tiles, found {len(tiles)}")
    for tile in tiles:
        mask = instance_mask_path(tile)
        if not mask.is_file():
            raise SystemExit(f"--src '{src}': tile '{tile.name}' has no mask '{mask.name}'")
    return tiles


def instance_mask_path(tile: Path) -> Path:
    return tile.with_name(f"{tile.stem}_instance_id_RGB.png")


def read_amplitude(tile: Path) -> np.ndarray:
    """``[800, 800]`` uint8: the first channel of an HRSID tile (all channels are equal)."""
    from PIL import Image

    with Image.open(tile) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.shape != (TILE_SIZE, TILE_SIZE) or arr.dtype != np.uint8:
        raise SystemExit(f"tile '{tile}': expected {TILE_SIZE}x{TILE_SIZE} uint8, "
                         f"got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def read_instances(mask_path: Path) -> np.ndarray:
    """``[800, 800]`` int32 labels: 0 background, 1..n one per distinct non-black colour.

    Labels follow the colours' sorted (R, G, B) order, so they are deterministic.
    """
    from PIL import Image

    with Image.open(mask_path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(np.int32)
    if rgb.shape[:2] != (TILE_SIZE, TILE_SIZE):
        raise SystemExit(f"mask '{mask_path}': expected {TILE_SIZE}x{TILE_SIZE}, got {rgb.shape[:2]}")
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse = np.unique(code, return_inverse=True)  # sorted; black (0) first if present
    labels = inverse.reshape(code.shape).astype(np.int32)
    if colours[0] != 0:  # no background at all: every colour is an instance
        labels += 1
    return labels


def scene_transform():
    from affine import Affine

    return Affine(PIXEL_SIZE_M, 0.0, ORIGIN_EASTING, 0.0, -PIXEL_SIZE_M, ORIGIN_NORTHING)


def _atomic(dest: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp_path)`` in a private folder next to ``dest``, then rename onto ``dest``."""
    tmp_dir = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.partial"
    tmp_dir.mkdir()
    try:
        tmp = tmp_dir / dest.name  # final name inside (GeoPackage/GeoTIFF may record it)
        write(tmp)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_scene(dest: Path, mosaic: np.ndarray, tiles: list[Path]) -> None:
    import rasterio
    from rasterio.enums import Resampling

    def write(tmp: Path) -> None:
        profile = {
            "driver": "GTiff", "height": mosaic.shape[0], "width": mosaic.shape[1], "count": 1,
            "dtype": "uint8", "crs": f"EPSG:{CRS_EPSG}", "transform": scene_transform(),
            "compress": "deflate", "predictor": 2, "zlevel": 9,
            "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "interleave": "band",
        }
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(mosaic, 1)
            dst.set_band_description(1, "SAR amplitude (HRSID, 8-bit)")
            dst.update_tags(
                SOURCE="HRSID sample tiles (High-Resolution SAR Images Dataset)",
                SOURCE_TILES=",".join(t.name for t in tiles),
                MOSAIC=f"{GRID}x{GRID} row-major, {TILE_SIZE}x{TILE_SIZE} px tiles sorted by file name",
                GEOREFERENCE=GEOREF_NOTE,
                NOMINAL_CRS=f"EPSG:{CRS_EPSG}",
                NOMINAL_PIXEL_SIZE_M=str(PIXEL_SIZE_M),
                NOMINAL_UPPER_LEFT=f"{ORIGIN_EASTING:.0f} {ORIGIN_NORTHING:.0f}",
                LICENSE="GPL-3.0 (HRSID data); see LICENSE-HRSID.txt",
                BUILT_BY=REBUILD_COMMAND,
            )
        with rasterio.open(tmp, "r+") as dst:
            dst.build_overviews(list(OVERVIEWS), Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")

    _atomic(dest, write)


def truth_features(tiles: list[Path]) -> list[tuple[dict, dict]]:
    """GeoJSON-like ``(geometry, properties)`` per ship over the whole mosaic, in scene CRS."""
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import MultiPolygon, mapping, shape
    from shapely.ops import unary_union

    base = scene_transform()
    features: list[tuple[dict, dict]] = []
    for i, tile in enumerate(tiles):
        row, col = divmod(i, GRID)
        transform = Affine(base.a, base.b, base.c + col * TILE_SIZE * base.a,
                           base.d, base.e, base.f + row * TILE_SIZE * base.e)
        labels = read_instances(instance_mask_path(tile))
        parts: dict[int, list] = {}
        for geom, value in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
            parts.setdefault(int(value), []).append(shape(geom))
        for label in sorted(parts):
            geom = unary_union(parts[label])
            if not geom.is_valid:  # pragma: no cover - rasterio's shapes are valid
                geom = geom.buffer(0)
            if geom.geom_type == "Polygon":
                geom = MultiPolygon([geom])
            features.append((mapping(geom), {
                "instance": len(features) + 1, "tile": tile.stem, "class_id": 1, "class_name": "ship",
            }))
    return features


def write_truth(dest: Path, features: list[tuple[dict, dict]]) -> None:
    import fiona
    from fiona.crs import CRS as FionaCRS

    schema = {
        "geometry": "MultiPolygon",
        "properties": {"instance": "int", "tile": "str", "class_id": "int", "class_name": "str"},
    }

    def write(tmp: Path) -> None:
        with fiona.open(tmp, "w", driver="GPKG", layer="ships", schema=schema,
                        crs=FionaCRS.from_epsg(CRS_EPSG)) as dst:
            for geometry, props in features:
                dst.write(fiona.Feature.from_dict(geometry=geometry, properties=props))

    _atomic(dest, write)


def write_text(dest: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _atomic(dest, write)


def readme_text(tiles: list[Path], n_ships: int, per_tile: list[int], scene_bytes: int) -> str:
    rows = "\n".join(
        f"| {i + 1} | {'upper' if i < GRID else 'lower'} {'left' if i % GRID == 0 else 'right'} "
        f"| `{t.name}` | {n} |"
        for i, (t, n) in enumerate(zip(tiles, per_tile))
    )
    return f"""# Demo scene: HRSID SAR ships

`{SCENE_NAME}` is a 1600 x 1600 single-band uint8 GeoTIFF (SAR amplitude, {scene_bytes:,} bytes)
made from four 800 x 800 sample tiles of HRSID (High-Resolution SAR Images Dataset, Wei et al.,
2020; folder `--src` below). `{TRUTH_NAME}` holds their {n_ships} ground-truth ship
instances as polygons, so a segmentation of the demo scene can be compared with the truth.

## Source tiles and mosaic

The tiles, sorted by file name, are placed 2 x 2, row-major:

| # | position | HRSID tile | ships |
|---|---|---|---|
{rows}

The HRSID PNGs are 3-channel copies of one amplitude band; the first channel is kept, unchanged
(uint8). The GeoTIFF is deflate-compressed (horizontal predictor), internally tiled 256 x 256, with
internal overviews 2 and 4 (average).

## Nominal georeference (not the real location)

HRSID publishes no georeference for these tiles. The scene is given a made-up one so that GIS
software and the engine have a projected CRS to work in:

- CRS: EPSG:32631 (WGS 84 / UTM zone 31N)
- pixel size: 1.0 m (HRSID's tiles are 0.5-3 m; 1 m is nominal)
- upper-left corner: easting 500000, northing 5700000 (open sea off the Belgian/Dutch coast,
  about 3.0 E, 51.45 N)

Areas in m^2 computed on this scene are therefore nominal too. The same statement is stored in
the GeoTIFF's metadata tags (`GEOREFERENCE`, `NOMINAL_*`, `SOURCE_TILES`, `LICENSE`).

## Ground truth

`{TRUTH_NAME}`, layer `ships`, EPSG:32631, one MultiPolygon feature per ship with attributes
`instance` (1..{n_ships} over the mosaic, tile by tile), `tile` (HRSID tile name), `class_id` (1) and
`class_name` (`ship`). Each distinct non-black RGB colour of a tile's `*_instance_id_RGB.png` is one
instance; its pixels are polygonised with `rasterio.features.shapes` (4-connectivity, pixel edges)
in the scene's CRS.

## Licence

The HRSID data are licensed under the GNU General Public License v3.0; the licence text is in
`{LICENSE_NAME}` (copied from the dataset). The demo scene and its ground truth are derived from
HRSID and carry the same licence.

## Rebuild

From the repository root (deterministic; outputs are replaced atomically):

```
{REBUILD_COMMAND}
```

Options: `--src` (default `../shared/data/hrsid_samples`), `--out-dir` (default `data/demo`).
"""


def build(src: Path, out_dir: Path) -> dict:
    """Build all outputs; returns a small summary."""
    tiles = find_tiles(src)
    license_src = src / "LICENSE"
    if not license_src.is_file():
        raise SystemExit(f"--src '{src}': no LICENSE file; the HRSID licence must ship with the scene")
    out_dir.mkdir(parents=True, exist_ok=True)

    mosaic = np.zeros((GRID * TILE_SIZE, GRID * TILE_SIZE), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, GRID)
        mosaic[row * TILE_SIZE : (row + 1) * TILE_SIZE, col * TILE_SIZE : (col + 1) * TILE_SIZE] = (
            read_amplitude(tile)
        )
    scene = out_dir / SCENE_NAME
    write_scene(scene, mosaic, tiles)

    features = truth_features(tiles)
    write_truth(out_dir / TRUTH_NAME, features)
    per_tile = [sum(1 for _, p in features if p["tile"] == t.stem) for t in tiles]

    write_text(out_dir / LICENSE_NAME, license_src.read_text(encoding="utf-8"))
    scene_bytes = scene.stat().st_size
    write_text(out_dir / README_NAME, readme_text(tiles, len(features), per_tile, scene_bytes))
    return {"scene": scene, "scene_bytes": scene_bytes, "ships": len(features), "per_tile": per_tile}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC,
                        help="folder with the HRSID sample tiles (default: ../shared/data/hrsid_samples)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="output folder (default: data/demo)")
    args = parser.parse_args(argv)
    summary = build(args.src, args.out_dir)
    print(f"{summary['scene']}: {summary['scene_bytes']} bytes; {summary['ships']} ships "
          f"(per tile {summary['per_tile']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
