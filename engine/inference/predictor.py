"""Tiled instance segmentation of a raster into polygons.

raster windows (tile_grid) -> normalise -> batched model -> per-tile instances in raster pixels
-> streaming seam de-duplication (StreamingMerger: objects are written once no later tile can touch
them, so memory holds about one row of tiles of instances) -> polygons in the raster's CRS -> VectorWriter.
Progress, warnings and cancellation are injected callables; the output is written atomically.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import Checkpoint
from engine.device import pick_device
from engine.errors import Cancelled, UserError
from engine.merge import Instance, StreamingMerger
from engine.models import build_model
from engine.normalise import normalise
from engine.raster.source import RasterInfo, RasterSource
from engine.spec import ModelSpec
from engine.tiling import Tile, extent_to_window, map_bounds, tile_grid_window
from engine.vector import VectorWriter, geometry_area_m2, mask_to_geometry, pixel_area_m2
from engine.vector.tile_grid import TileRecord, write_tile_grid


@dataclass(frozen=True)
class SegmentOptions:
    """Inference settings; None means "the model spec's default"."""

    tile_size: int | None = None
    overlap: int | None = None
    score_threshold: float | None = None
    mask_threshold: float | None = None
    batch_size: int = 4
    bands: list[int] | None = None  # 1-based raster bands fed to the model
    merge_threshold: float = 0.5  # intersection / smaller part for seam duplicates
    simplify: float = 0.0  # polygon simplification tolerance, map units
    tile_grid: str | None = None  # optional QA output: the tile windows as polygons with their status
    extent: tuple[float, float, float, float] | None = None  # xmin, ymin, xmax, ymax in the raster's CRS


@dataclass(frozen=True)
class SegmentResult:
    output: str
    features: int
    tiles: int
    seconds: float
    class_counts: dict[str, int]
    peak_pending: int = 0  # most raw instances held in memory at once (streaming merge)


class Predictor:
    """A model ready for inference on one device: `predict(list of [C,H,W] float32) -> list of dicts`."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto") -> None:
        self.spec: ModelSpec = checkpoint.spec
        self.device = pick_device(device)
        self.model = build_model(self.spec)
        state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint.state_dict.items()}
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"checkpoint for '{self.spec.name}': weights do not match its spec "
                            f"({str(exc).splitlines()[0][:120]})") from None
        self.model.eval().to(self.device)

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Normalised tiles [C,h,w] -> per tile {"boxes" [N,4], "labels" [N], "scores" [N], "masks" [N,h,w] prob}."""
        tensors = [torch.from_numpy(np.ascontiguousarray(im)).to(self.device) for im in images]
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            outputs = self.model(tensors)
        return [{"boxes": o["boxes"].float().cpu().numpy(), "labels": o["labels"].cpu().numpy(),
                 "scores": o["scores"].float().cpu().numpy(), "masks": o["masks"][:, 0].float().cpu().numpy()}
                for o in outputs]


def tile_instances(output: dict[str, np.ndarray], tile: Tile, score_threshold: float,
                   mask_threshold: float) -> list[Instance]:
    """One tile's model output -> Instances in raster pixels, masks cropped to their bounding boxes."""
    found = []
    window = (tile.row_off, tile.col_off, tile.row_off + tile.height, tile.col_off + tile.width)
    for label, score, prob in zip(output["labels"], output["scores"], output["masks"]):
        if score < score_threshold:
            continue
        mask = prob >= mask_threshold
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        found.append(Instance(int(label), float(score), mask[r0:r1, c0:c1].copy(),
                              tile.row_off + int(r0), tile.col_off + int(c0), window=window))
    return found


def _frontiers(tiles: list[Tile]) -> list[int]:
    """frontiers[i]: the smallest window row among tiles[i:] (no tile from i on reads above it)."""
    out = [0] * len(tiles)
    low = None
    for i in range(len(tiles) - 1, -1, -1):
        low = tiles[i].row_off if low is None else min(low, tiles[i].row_off)
        out[i] = low
    return out


def _write_instance(writer: VectorWriter, inst: Instance, info, spec: ModelSpec, options: SegmentOptions,
                    model_label: str, raster, counts: dict[str, int]) -> None:
    """Vectorise one final instance in the raster's CRS and write it with its attributes."""
    geom = mask_to_geometry(inst.mask, inst.row_off, inst.col_off, info.transform, options.simplify)
    if geom is None:
        return
    area = geometry_area_m2(geom, info.crs_wkt) if info.georeferenced else pixel_area_m2(geom, spec.gsd_m)
    name = spec.class_name(inst.class_id)
    writer.write(geom, {
        "class_id": inst.class_id, "class_name": name, "score": round(inst.score, 4),
        "area_m2": round(area, 2), "n_tiles": inst.n_tiles, "merged": int(inst.merged),
        "model": model_label or spec.name, "source": str(Path(raster).name),
    })
    counts[name] = counts.get(name, 0) + 1


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(tiles), size):
        yield tiles[i:i + size]


def _numbers(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.12g}" for v in values)


def _work_window(raster: str | Path, info: RasterInfo, extent: tuple[float, ...] | None) -> tuple[int, int, int, int]:
    """``(row0, col0, height, width)`` of the raster part to segment: all of it, or the pixels under `extent`."""
    if extent is None:
        return (0, 0, info.height, info.width)
    text = _numbers(extent)
    try:
        window = extent_to_window(extent, info.transform, info.height, info.width)
    except ValueError:
        raise UserError(f"--extent {text}: give XMIN,YMIN,XMAX,YMAX with XMIN < XMAX and YMIN < YMAX") from None
    if window is None:
        bounds = _numbers(map_bounds(info.transform, info.height, info.width))
        units = "its CRS" if info.georeferenced else "pixels (x=column, y=row; it has no CRS)"
        raise UserError(f"--extent {text}: does not intersect raster '{raster}', whose bounds are {bounds} "
                        f"in {units}")
    return window


def segment_raster(
    raster: str | Path,
    out: str | Path,
    predictor: Predictor,
    options: SegmentOptions = SegmentOptions(),
    model_label: str = "",
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    started: Callable[[int], None] | None = None,
) -> SegmentResult:
    """Segment `raster` with `predictor` and write polygons to `out` (.gpkg, .shp, .geojson).

    `started(n_tiles)` is called once the raster and output are checked, before the first tile.
    """
    spec = predictor.spec
    tile_size = options.tile_size or spec.tile_size
    overlap = spec.overlap if options.overlap is None else options.overlap
    score_thr = spec.score_threshold if options.score_threshold is None else options.score_threshold
    mask_thr = spec.mask_threshold if options.mask_threshold is None else options.mask_threshold
    if overlap >= tile_size:
        raise UserError(f"--overlap {overlap}: must be smaller than the tile size {tile_size}")
    warn = warn or (lambda msg: None)
    start = time.perf_counter()
    with RasterSource(raster, options.bands) as src:
        info = src.info
        if len(src.bands) != spec.bands:
            raise UserError(
                f"raster '{raster}': {len(src.bands)} band(s) selected, model '{spec.name}' expects {spec.bands} "
                f"({', '.join(spec.band_names)}); choose bands with --bands, e.g. --bands "
                f"{','.join(str(i + 1) for i in range(spec.bands))}")
        try:
            writer = VectorWriter(out, info.crs_wkt, layer_name=Path(out).stem)
            if options.tile_grid:
                VectorWriter(options.tile_grid, info.crs_wkt, layer_name="tiles")  # checks that destination now
        except (ValueError, PermissionError) as exc:  # unwritable folder, unsupported extension
            raise UserError(str(exc)) from None
        tiles = tile_grid_window(*_work_window(raster, info, options.extent), tile_size, overlap)
        if started:
            started(len(tiles))
        if not info.georeferenced:
            warn(f"raster '{raster}' has no CRS: polygons are in pixel coordinates (x=column, y=row) and "
                 f"areas use the model's ground sample distance {spec.gsd_m} m")
        merger = StreamingMerger(options.merge_threshold)
        records: list[TileRecord] = []  # per tile: a few integers, for the optional QA grid
        frontiers = _frontiers(tiles)
        counts: dict[str, int] = {}
        last_frontier = -1
        done = 0
        with writer:
            for batch in _batches(tiles, options.batch_size):
                if cancelled and cancelled():
                    raise Cancelled()
                images, kept = [], []
                for tile in batch:
                    pixels = src.read(*tile.window)
                    valid = src.valid_mask(pixels)
                    if valid is not None and not valid.any():
                        records.append(TileRecord(tile, "nodata", 0))
                        continue  # all nodata: nothing to see
                    image = normalise(pixels, spec.normalisation)
                    if valid is not None:
                        image[:, ~valid] = 0.0
                    images.append(image)
                    kept.append(tile)
                if images:
                    for tile, output in zip(kept, predictor.predict(images)):
                        found = tile_instances(output, tile, score_thr, mask_thr)
                        records.append(TileRecord(tile, "run", len(found)))
                        merger.add(found)
                done += len(batch)
                frontier = frontiers[done] if done < len(tiles) else None
                if frontier != last_frontier:  # a tile row is complete (None: all are): write what is final
                    for inst in merger.flush(frontier):
                        _write_instance(writer, inst, info, spec, options, model_label, raster, counts)
                    last_frontier = frontier
                if progress:
                    progress(done, len(tiles))
            if cancelled and cancelled():
                raise Cancelled()  # the writer's __exit__ removes the partial output
            n = writer.count
        if options.tile_grid:
            write_tile_grid(options.tile_grid, sorted(records, key=lambda r: (r.tile.row_off, r.tile.col_off)),
                            info.transform, info.crs_wkt)
    return SegmentResult(str(out), n, len(tiles), round(time.perf_counter() - start, 3), counts,
                         merger.peak_pending)
