"""Write a large synthetic SAR scene for benchmarks: a tiled GeoTIFF with scattered ships, in flat memory.

    python -m benchmarks.make_large_scene OUT.tif --size 30000 [--swath] [--seed 0]

1-band uint8 amplitude, EPSG:32631, 3 m pixels (inside the shipped SSDD model's 1-15 m range),
256 x 256 internal tiles, deflate. Background: gamma-distributed sea clutter (4 looks); ships: bright
ellipses 8-50 px long at random angles, about one per 300 x 300 px. ``--swath`` gives the scene the
footprint of a real satellite acquisition: a slanted strip with nodata (0) outside it, as Sentinel-1
GRD scenes have. The raster is written in strips of 256 rows; no full-size array is ever allocated.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

STRIP = 256
PIXEL_M = 3.0
ORIGIN = (400000.0, 5800000.0)  # EPSG:32631, the North Sea


def _ships(size: int, rng: np.random.Generator) -> np.ndarray:
    """[N, 5] ship ellipses: centre row, centre col, half length, half width (px), angle (rad)."""
    n = max(1, size * size // 90000)
    rows, cols = rng.uniform(0, size, n), rng.uniform(0, size, n)
    half_len = rng.uniform(4, 25, n)
    half_wid = half_len * rng.uniform(0.18, 0.35, n)
    return np.stack([rows, cols, half_len, half_wid, rng.uniform(0, math.pi, n)], axis=1)


def _swath_valid(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """True inside a strip slanted like a descending pass: 70% of the width, edges tilted by 12 degrees."""
    shift = (rows - size / 2) * math.tan(math.radians(12))
    centre = size / 2 + shift
    return np.abs(cols - centre) < 0.35 * size


def _draw_ships(size: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """The scene's ships sorted by row, and the generator that then draws its clutter."""
    rng = np.random.default_rng(seed)
    ships = _ships(size, rng)
    return ships[np.argsort(ships[:, 0])], rng


def scene_ships(size: int, seed: int = 0, swath: bool = False) -> np.ndarray:
    """[N, 5] ground truth of ``write_synthetic_scene(_, size, seed, swath)``: centre row, centre col,
    half length, half width (px), angle (rad); with ``swath``, only ships centred inside the strip."""
    ships, _ = _draw_ships(size, seed)
    if swath:
        ships = ships[_swath_valid(ships[:, 0], ships[:, 1], size)]
    return ships


def match_to_ships(centres: np.ndarray, scores: np.ndarray, ships: np.ndarray) -> dict[str, float]:
    """Count detections against the ships of a scene: in score order, each detection centre [M, 2]
    (row, col px) takes the nearest unclaimed ship whose centre is within that ship's half length
    (at least 4 px). Returns {"true", "false", "missed", "recall", "precision"}; ships overlapping
    each other can be found as one, which counts as one hit and one miss."""
    ships = np.asarray(ships, dtype=np.float64).reshape(-1, 5)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    reach = np.maximum(ships[:, 2], 4.0)
    order = np.argsort(ships[:, 0])
    rows = ships[order, 0]
    claimed = np.zeros(len(ships), dtype=bool)
    hits = 0
    for k in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        r, c = centres[k]
        lo, hi = np.searchsorted(rows, [r - 25.0, r + 25.0])  # half lengths are at most 25 px
        near = order[lo:hi]
        near = near[~claimed[near]]
        dist = np.hypot(ships[near, 0] - r, ships[near, 1] - c)
        ok = dist <= reach[near]
        if ok.any():
            claimed[near[ok][np.argmin(dist[ok])]] = True
            hits += 1
    n_det, n_ship = len(centres), len(ships)
    return {"true": hits, "false": n_det - hits, "missed": n_ship - hits,
            "recall": hits / n_ship if n_ship else 1.0, "precision": hits / n_det if n_det else 1.0}


def write_synthetic_scene(path: str | Path, size: int, seed: int = 0, swath: bool = False) -> Path:
    """Write the scene (see module docstring) and return its path; its ships are ``scene_ships``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ships, rng = _draw_ships(size, seed)
    reach = ships[:, 2].max() + 1
    profile = dict(driver="GTiff", height=size, width=size, count=1, dtype="uint8", crs="EPSG:32631",
                   transform=Affine(PIXEL_M, 0, ORIGIN[0], 0, -PIXEL_M, ORIGIN[1]), tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", nodata=0 if swath else None,
                   BIGTIFF="IF_SAFER")
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        cols = np.arange(size, dtype=np.float32)
        for row0 in range(0, size, STRIP):
            h = min(STRIP, size - row0)
            strip = rng.gamma(4.0, 10.0, (h, size)).astype(np.float32)  # clutter, mean 40
            lo, hi = np.searchsorted(ships[:, 0], [row0 - reach, row0 + h + reach])
            for r, c, a, b, ang in ships[lo:hi]:
                r0, r1 = max(row0, int(r - a - 1)), min(row0 + h, int(r + a + 2))
                c0, c1 = max(0, int(c - a - 1)), min(size, int(c + a + 2))
                if r0 >= r1 or c0 >= c1:
                    continue
                rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float32)
                u = (cc - c) * math.cos(ang) + (rr - r) * math.sin(ang)
                v = -(cc - c) * math.sin(ang) + (rr - r) * math.cos(ang)
                inside = (u / a) ** 2 + (v / b) ** 2 <= 1
                patch = strip[r0 - row0:r1 - row0, c0:c1]
                patch[inside] = rng.uniform(170, 250, int(inside.sum()))
            pixels = np.clip(strip, 1, 255).astype(np.uint8)
            if swath:
                rows = np.arange(row0, row0 + h, dtype=np.float32)[:, None]
                pixels[~_swath_valid(rows, cols[None, :], size)] = 0
            dst.write(pixels, 1, window=Window(0, row0, size, h))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=30000, help="pixels a side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--swath", action="store_true", help="slanted swath footprint, nodata outside")
    args = parser.parse_args(argv)
    out = write_synthetic_scene(args.out, args.size, args.seed, args.swath)
    print(f"wrote {out} ({args.size} x {args.size} px, {out.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
