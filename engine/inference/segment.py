"""Tiled segmentation of a raster into polygons, as a three-stage pipeline (instance or semantic models).

reader thread: working-grid windows (engine.raster) -> validity (nodata tiles are skipped, never run)
  -> value scaling + normalisation  ==bounded queue==>
calling thread: batched model forward (timed: `forward_seconds`)  ==bounded queue==>
writer thread: per-tile instances -> streaming seam merge (an object is written once no later tile
  can touch it) -> polygons mapped back to the raster's CRS -> VectorWriter (atomic). Semantic models
  (spec.task == "semantic") get engine.inference.semantic_segment's writer stage instead (blended
  probabilities in a rolling strip -> one polygon per class component).
Memory holds a few batches per queue plus about one row of tiles of instances, whatever the raster
size. Progress, warnings and cancellation are injected callables.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from engine.errors import Cancelled, UserError
from engine.inference.pipeline import Consumer, Producer
from engine.inference.predictor import Predictor, tile_instances
from engine.merge import StreamingMerger, suppress_nested_duplicates
from engine.raster.input_values import InputScaling, apply_input_scaling, plan_input_scaling
from engine.raster.source import GsdPolicy, RasterInfo, RasterSource
from engine.raster.working_grid import accepted_gsd_range
from engine.spec import ModelSpec
from engine.tiling import Tile, extent_to_window, map_bounds, tile_grid_window, tiles_area
from engine.vector import VectorWriter, geometry_area_m2, mask_to_geometry, pixel_area_m2
from engine.vector.tile_grid import TileRecord, write_tile_grid


@dataclass(frozen=True)
class SegmentOptions:
    """Inference settings; None means "the model spec's default"."""

    tile_size: int | None = None
    overlap: int | None = None
    score_threshold: float | None = None
    mask_threshold: float | None = None
    batch_size: int | None = None  # tiles per model call; None: 1 on CPU (fastest there), 8 on CUDA
    bands: list[int] | None = None  # 1-based raster bands fed to the model
    merge_threshold: float = 0.5  # intersection / smaller part for seam duplicates
    duplicate_containment: float | None = 0.8  # drop a tile's detection this much inside a stronger one; None: keep
    min_area: int = 4  # semantic models: components of fewer pixels (working grid) are dropped
    simplify: float = 0.0  # polygon simplification tolerance, map units
    tile_grid: str | None = None  # optional QA output: the tile windows as polygons with their status
    extent: tuple[float, float, float, float] | None = None  # xmin, ymin, xmax, ymax in the raster's CRS
    resample: bool = True  # resample to the model's GSD when the raster's is outside the accepted range
    gsd_tolerance: float = 0.25  # accepted relative GSD difference when the spec gives no gsd_range_m
    value_range: tuple[float, float] | None = None  # raw MIN, MAX -> 0..1 (see engine.raster.input_values)
    sar_input: str = "auto"  # "auto" | "amplitude" | "db"
    queue_depth: int = 2  # batches waiting between pipeline stages
    gdal_cache_mb: int = 128  # GDAL's block cache (its default, 5% of RAM, grows with the raster read)


@dataclass(frozen=True)
class SegmentResult:
    output: str
    features: int
    tiles: int
    seconds: float
    class_counts: dict[str, int]
    peak_pending: int = 0  # most raw instances held in memory at once (streaming merge)
    tiles_run: int = 0  # tiles that went through the model (the others were all nodata)
    forward_seconds: float = 0.0  # sum of pure model forward time
    notes: list[str] = field(default_factory=list)  # resampling / value scaling decisions


@dataclass
class _Batch:
    tiles: list[Tile]  # tiles of this batch that run through the model
    images: list[np.ndarray]
    skipped: list[Tile]  # all-nodata tiles
    size: int  # tiles in the batch, run or not
    valid: list[np.ndarray | None] = field(default_factory=list)  # per run tile: [h,w] bool, None = all valid
    outputs: list[dict] | None = None


def _numbers(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.12g}" for v in values)


def _work_window(raster: str | Path, src: RasterSource, extent: tuple[float, ...] | None) -> tuple[int, int, int, int]:
    """``(row0, col0, height, width)`` of the working grid to segment: all of it, or the pixels under `extent`."""
    work = src.work
    if extent is None:
        return (0, 0, work.height, work.width)
    text = _numbers(extent)
    try:
        window = extent_to_window(src.extent_in_work_crs(extent), work.transform, work.height, work.width)
    except ValueError:
        raise UserError(f"--extent {text}: give XMIN,YMIN,XMAX,YMAX with XMIN < XMAX and YMIN < YMAX") from None
    if window is None:
        info = src.info
        bounds = _numbers(map_bounds(info.transform, info.height, info.width))
        units = "its CRS" if info.georeferenced else "pixels (x=column, y=row; it has no CRS)"
        raise UserError(f"--extent {text}: does not intersect raster '{raster}', whose bounds are {bounds} "
                        f"in {units}")
    return window


def row_frontiers(tiles: list[Tile]) -> list[int]:
    """frontiers[i]: the smallest window row among tiles[i:] (no tile from i on reads above it)."""
    out = [0] * len(tiles)
    low = None
    for i in range(len(tiles) - 1, -1, -1):
        low = tiles[i].row_off if low is None else min(low, tiles[i].row_off)
        out[i] = low
    return out


def _read_batches(src: RasterSource, tiles: list[Tile], size: int, spec: ModelSpec,
                  scaling: InputScaling) -> Iterator[_Batch]:
    """Reader stage: windows -> normalised images; all-nodata tiles are only recorded."""
    for i in range(0, len(tiles), size):
        batch = _Batch([], [], [], len(tiles[i:i + size]))
        for tile in tiles[i:i + size]:
            pixels, valid = src.read_valid(*tile.window)
            if valid is not None and not valid.any():
                batch.skipped.append(tile)
                continue
            image = apply_input_scaling(pixels, spec.normalisation, scaling)
            if valid is not None:
                image[:, ~valid] = 0.0
            batch.tiles.append(tile)
            batch.images.append(image)
            batch.valid.append(valid)
        yield batch


class _Vectoriser:
    """Writer stage: model outputs -> streaming merge -> polygons in the raster's CRS -> writer."""

    def __init__(self, writer: VectorWriter, src: RasterSource, spec: ModelSpec, tiles: list[Tile],
                 thresholds: tuple[float, float], options: SegmentOptions, model_label: str, raster: str,
                 progress: Callable[[int, int], None] | None) -> None:
        self.writer, self.src, self.spec, self.options = writer, src, spec, options
        self.score_thr, self.mask_thr = thresholds
        self.model_label, self.source = model_label or spec.name, str(Path(raster).name)
        self.merger = StreamingMerger(options.merge_threshold)
        self.frontiers = row_frontiers(tiles)
        self.area_bounds = tiles_area(tiles)
        self.total, self.done, self.last_frontier = len(tiles), 0, -1
        self.records: list[TileRecord] = []  # per tile: a few integers, for the optional QA grid
        self.counts: dict[str, int] = {}
        self.progress = progress

    def __call__(self, batch: _Batch) -> None:
        self.records.extend(TileRecord(t, "nodata", 0) for t in batch.skipped)
        for tile, output in zip(batch.tiles, batch.outputs or []):
            found = suppress_nested_duplicates(tile_instances(output, tile, self.score_thr, self.mask_thr,
                                                              self.area_bounds), self.options.duplicate_containment)
            self.records.append(TileRecord(tile, "run", len(found)))
            self.merger.add(found)
        self.done += batch.size
        frontier = self.frontiers[self.done] if self.done < self.total else None
        if frontier != self.last_frontier:  # a tile row is complete (None: all are): write what is final
            for inst in self.merger.flush(frontier):
                self._write(inst)
            self.last_frontier = frontier
        if self.progress:
            self.progress(self.done, self.total)

    @property
    def peak_pending(self) -> int:
        return self.merger.peak_pending

    def _write(self, inst) -> None:
        geom = mask_to_geometry(inst.mask, inst.row_off, inst.col_off, self.src.work.transform, self.options.simplify)
        if geom is not None:
            write_feature(self, geom, inst.class_id, inst.score, inst.n_tiles, inst.merged)


def write_feature(stage, geom, class_id: int, score: float, n_tiles: int, merged: bool) -> None:
    """Write one polygon given in the working grid's map coordinates, with its area (m^2) and the schema's
    attributes; `stage` (a writer stage) holds writer, src, spec, model_label, source and the class counts."""
    work, info = stage.src.work, stage.src.info
    area = geometry_area_m2(geom, work.crs_wkt) if work.georeferenced else pixel_area_m2(geom, stage.spec.gsd_m)
    if stage.src.plan.reprojected:  # traced in UTM: back to the raster's own CRS
        geom = shape(transform_geom(work.crs_wkt, info.crs_wkt, mapping(geom)))
    name = stage.spec.class_name(class_id)
    stage.writer.write(geom, {
        "class_id": class_id, "class_name": name, "score": round(score, 4), "area_m2": round(area, 2),
        "n_tiles": n_tiles, "merged": int(merged), "model": stage.model_label, "source": stage.source,
    })
    stage.counts[name] = stage.counts.get(name, 0) + 1


def _open_source(raster: str | Path, spec: ModelSpec, options: SegmentOptions) -> RasterSource:
    accepted = accepted_gsd_range(spec.gsd_m, spec.gsd_range_m, options.gsd_tolerance)
    return RasterSource(raster, options.bands, GsdPolicy(spec.gsd_m, accepted, options.resample), options.extent)


def _plan_scaling(src: RasterSource, spec: ModelSpec, options: SegmentOptions) -> InputScaling:
    try:  # src.sample reads the whole raster decimated: only done when the rules need its values
        return plan_input_scaling(spec.normalisation, src.info.dtype, src.sample, None, options.value_range,
                                  options.sar_input)
    except ValueError as exc:
        raise UserError(f"--sar-input: {exc}") from None


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
    GDAL's block cache is bounded (`options.gdal_cache_mb`) so that memory does not grow with the raster.
    """
    with rasterio.Env(GDAL_CACHEMAX=options.gdal_cache_mb):
        return _segment(raster, out, predictor, options, model_label, progress, warn, cancelled, started)


def _segment(raster, out, predictor: Predictor, options: SegmentOptions, model_label: str, progress, warn,
             cancelled, started) -> SegmentResult:
    spec = predictor.spec
    tile_size = options.tile_size or spec.tile_size
    overlap = spec.overlap if options.overlap is None else options.overlap
    score_thr = spec.score_threshold if options.score_threshold is None else options.score_threshold
    mask_thr = spec.mask_threshold if options.mask_threshold is None else options.mask_threshold
    if overlap >= tile_size:
        raise UserError(f"--overlap {overlap}: must be smaller than the tile size {tile_size}")
    warn = warn or (lambda msg: None)
    start = time.perf_counter()
    forward_before = predictor.forward_seconds
    with _open_source(raster, spec, options) as src:
        info: RasterInfo = src.info
        if len(src.bands) != spec.bands:
            raise UserError(
                f"raster '{raster}': {len(src.bands)} band(s) selected, model '{spec.name}' expects {spec.bands} "
                f"({', '.join(spec.band_names)}); choose bands with --bands, e.g. --bands "
                f"{','.join(str(i + 1) for i in range(spec.bands))}")
        try:
            writer = VectorWriter(out, info.crs_wkt, layer_name=Path(out).stem)
            if options.tile_grid:
                VectorWriter(options.tile_grid, src.work.crs_wkt, layer_name="tiles")  # checks that destination now
        except (ValueError, PermissionError) as exc:  # unwritable folder, unsupported extension
            raise UserError(str(exc)) from None
        tiles = tile_grid_window(*_work_window(raster, src, options.extent), tile_size, overlap)
        scaling = _plan_scaling(src, spec, options)
        notes = [n for n in (src.plan.reason, scaling.reason) if n]
        if started:
            started(len(tiles))
        if not info.georeferenced:
            warn(f"raster '{raster}' has no CRS: polygons are in pixel coordinates (x=column, y=row) and "
                 f"areas use the model's ground sample distance {spec.gsd_m} m")
        for note in notes:
            warn(f"raster '{raster}': {note}")
        batch_size = options.batch_size or (8 if predictor.device.type == "cuda" else 1)
        if spec.task == "semantic":
            from engine.inference.semantic_segment import SemanticVectoriser

            vectoriser = SemanticVectoriser(writer, src, spec, tiles, overlap, options, model_label, str(raster),
                                            progress)
        else:
            vectoriser = _Vectoriser(writer, src, spec, tiles, (score_thr, mask_thr), options, model_label,
                                     str(raster), progress)
        with writer:
            reader = Producer(_read_batches(src, tiles, batch_size, spec, scaling), options.queue_depth)
            post = Consumer(vectoriser, options.queue_depth)
            try:
                with predictor.min_score(score_thr):
                    for batch in reader:
                        if cancelled and cancelled():
                            raise Cancelled()
                        if batch.images:
                            batch.outputs = predictor.predict(batch.images)
                        post.put(batch)
                post.finish()
            except BaseException:
                post.stop(discard=True)
                raise  # the writer's __exit__ removes the partial output
            finally:
                reader.close()
            if cancelled and cancelled():
                raise Cancelled()
            n = writer.count
        if options.tile_grid:
            records = sorted(vectoriser.records, key=lambda r: (r.tile.row_off, r.tile.col_off))
            write_tile_grid(options.tile_grid, records, src.work.transform, src.work.crs_wkt)
    tiles_run = sum(r.status == "run" for r in vectoriser.records)
    return SegmentResult(str(out), n, len(tiles), round(time.perf_counter() - start, 3), vectoriser.counts,
                         vectoriser.peak_pending, tiles_run,
                         round(predictor.forward_seconds - forward_before, 3), notes)
