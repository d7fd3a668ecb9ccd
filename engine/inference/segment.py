"""Tiled segmentation of a raster into polygons, as a three-stage pipeline (any task).

reader thread: working-grid windows (engine.raster) -> validity (nodata tiles are skipped, never run)
  -> value scaling + normalisation  ==bounded queue==>
calling thread: batched model forward (timed: `forward_seconds`)  ==bounded queue==>
writer thread: the model's task's writer stage (engine.tasks: instance = streaming seam merge, semantic
  = blended probability strips -> class components); a feature is written once no later tile can change
  it -> polygons mapped back to the raster's CRS -> VectorWriter (atomic).
Memory holds a few batches per queue plus about one row of tiles of predictions, whatever the raster
size. Progress, warnings and cancellation come from one injected engine.progress.Progress.
Area masks (`aoi`, `exclude`: engine.inference.area_masks) drop tiles from the reader and features before writing.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from shapely.geometry.base import BaseGeometry

from engine.errors import Cancelled, UserError
from engine.inference.area_masks import AreaMask, aoi_window, check_masked, mask_inputs, masked_tiles, read_area_mask
from engine.inference.pipeline import Consumer, Producer
from engine.inference.predictor import Predictor
from engine.progress import NoProgress, Progress
from engine.raster.input_values import InputScaling, apply_input_scaling, plan_input_scaling
from engine.raster.source import GsdPolicy, RasterSource, raster_band_count
from engine.raster.working_grid import accepted_gsd_range
from engine.spec import ModelSpec
from engine.tasks import task_of
from engine.tasks.stage import FeatureSink, RowStreamingStage, TileBatch, WriterSettings
from engine.tiling import Tile, extent_to_window, map_bounds, tile_grid_window
from engine.validation import band_selection, distinct_files, segment_options, tiling
from engine.vector import VectorWriter
from engine.vector.tile_grid import TileRecord, write_tile_grid
from engine.vector.writer import check_output, default_layer_name


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
    layer: str | None = None  # GeoPackage layer; None: "<model>_<raster stem>" (engine.vector.default_layer_name)
    overwrite: bool = False  # replace an existing output file as a whole (default: a GeoPackage keeps its other layers)
    aoi: str | None = None  # polygon layer: keep features whose representative point lies inside (area_masks)
    exclude: str | None = None  # polygon layer, e.g. land: drop features whose representative point lies inside


@dataclass(frozen=True)
class SegmentResult:
    output: str
    features: int
    tiles: int
    seconds: float
    class_counts: dict[str, int]
    peak_pending: int = 0  # most predictions held at once waiting for later tiles (instances or components)
    tiles_run: int = 0  # tiles that went through the model (the others were all nodata)
    forward_seconds: float = 0.0  # sum of pure model forward time
    notes: list[str] = field(default_factory=list)  # resampling / value scaling decisions
    layer: str = ""  # the layer written (GeoPackage: inside `output`; other formats: the file's only layer)


def _numbers(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.12g}" for v in values)


def _work_window(raster: str | Path, src: RasterSource, extent: tuple[float, ...] | None,
                 mask: AreaMask | None = None) -> tuple[int, int, int, int]:
    """``(row0, col0, height, width)`` of the working grid to segment: all of it, the pixels under `extent`, or
    without `extent` those under the AOI's bounding box."""
    work = src.work
    if extent is None:
        return aoi_window(mask, work.transform, work.height, work.width) or (0, 0, work.height, work.width)
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


def read_batches(src: RasterSource, tiles: Sequence[Tile], size: int, spec: ModelSpec,
                 scaling: InputScaling, skip: Container[Tile] = ()) -> Iterator[TileBatch]:
    """Reader stage: windows -> normalised images; all-nodata tiles and the tiles in `skip` (area masks) are only
    recorded."""
    for i in range(0, len(tiles), size):
        batch = TileBatch([], [], [], len(tiles[i:i + size]))
        for tile in tiles[i:i + size]:
            if tile in skip:
                batch.skipped.append(tile)
                continue
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


def open_source(raster: str | Path, spec: ModelSpec, options: SegmentOptions) -> RasterSource:
    """`raster` opened on the working grid for `spec` (GSD policy, bands, extent); UserError when the selected
    bands are not in the raster or their count is not the model's (with a --bands fix that works for it)."""
    band_selection(raster, raster_band_count(raster), options.bands, spec.name, spec.bands, spec.band_names)
    accepted = accepted_gsd_range(spec.gsd_m, spec.gsd_range_m, options.gsd_tolerance)
    src = RasterSource(raster, options.bands, GsdPolicy(spec.gsd_m, accepted, options.resample), options.extent)
    if len(src.bands) != spec.bands:
        src.close()
        raise UserError(
            f"raster '{raster}': {len(src.bands)} band(s) selected, model '{spec.name}' expects {spec.bands} "
            f"({', '.join(spec.band_names)}); choose bands with --bands, e.g. --bands "
            f"{','.join(str(i + 1) for i in range(spec.bands))}")
    return src


def _plan_scaling(src: RasterSource, spec: ModelSpec, options: SegmentOptions) -> InputScaling:
    try:  # src.sample reads the whole raster decimated: only done when the rules need its values
        return plan_input_scaling(spec.normalisation, src.info.dtype, src.sample, None, options.value_range,
                                  options.sar_input)
    except ValueError as exc:
        raise UserError(f"--sar-input: {exc}") from None


def resolve_settings(spec: ModelSpec, options: SegmentOptions) -> tuple[int, WriterSettings]:
    """(tile size, writer settings) with the model's defaults filled in, after checking every option
    (engine.validation: ranges, finite numbers, tile size versus overlap naming the flag the user gave)."""
    segment_options(options)
    task = task_of(spec)
    tile_size, overlap = tiling(options.tile_size, options.overlap, spec.tile_size, spec.overlap)
    score_thr = task.default_score_threshold(spec) if options.score_threshold is None else options.score_threshold
    mask_thr = spec.mask_threshold if options.mask_threshold is None else options.mask_threshold
    return tile_size, WriterSettings(
        overlap=overlap, score_threshold=score_thr, mask_threshold=mask_thr,
        merge_threshold=options.merge_threshold, duplicate_containment=options.duplicate_containment,
        min_area=options.min_area, simplify=options.simplify, count_regions=bool(options.tile_grid))


def check_outputs(out: str | Path, src: RasterSource, options: SegmentOptions, spec: ModelSpec,
                  raster: str | Path) -> tuple[VectorWriter, list[str]]:
    """The (not yet opened) writer of `out` and the warnings about its destination, after checking that no
    output is an input and that `out` and the optional tile grid can be written (layer-safe in a GeoPackage)."""
    distinct_files([("--out", out), ("--tile-grid", options.tile_grid)],
                   [("raster", raster), *mask_inputs(options.aoi, options.exclude)])
    layer = options.layer if options.layer is not None else default_layer_name(spec.name, raster)
    writer = VectorWriter(out, src.info.crs_wkt, layer_name=layer, overwrite=options.overwrite)
    notes = list(writer.notes)
    if options.tile_grid:
        notes += check_output(options.tile_grid, "tiles", options.overwrite)[1]
    return writer, notes


@dataclass(frozen=True)
class TilePlan:
    """What to run on one raster: its tiles (row-major, working-grid pixels), value scaling, notes and area masks."""

    tiles: list[Tile]
    scaling: InputScaling
    notes: list[str]  # resampling / value scaling decisions, one line each
    mask: AreaMask | None = None  # --aoi / --exclude in the working grid's map coordinates
    masked: Mapping[Tile, str] = field(default_factory=dict)  # tiles of `tiles` never run -> QA status

    @property
    def keep(self) -> Callable[[BaseGeometry], bool] | None:
        """The FeatureSink's filter: the area mask's `keeps`, or None (every feature is written)."""
        return self.mask.keeps if self.mask is not None else None


def plan_tiles(raster: str | Path, src: RasterSource, spec: ModelSpec, options: SegmentOptions,
               tile_size: int, overlap: int) -> TilePlan:
    """The tile grid over the area to segment (all of the working grid, `options.extent` or the AOI's bounds), the
    tiles the area masks leave out, and the scaling."""
    work = src.work
    mask = read_area_mask(options.aoi, options.exclude, raster, work.crs_wkt, work.transform, work.height, work.width)
    tiles = tile_grid_window(*_work_window(raster, src, options.extent, mask), tile_size, overlap)
    masked = masked_tiles(tiles, mask, work.transform)
    mask_notes = check_masked(tiles, masked, options.aoi, raster)
    scaling = _plan_scaling(src, spec, options)
    return TilePlan(tiles, scaling, [n for n in (src.plan.reason, scaling.reason, *mask_notes) if n], mask, masked)


def raster_warnings(raster: str | Path, src: RasterSource, spec: ModelSpec, plan: TilePlan) -> list[str]:
    """The warnings a run on `raster` reports before its first tile (no CRS, resampling, value scaling)."""
    found = []
    if not src.info.georeferenced:
        found.append(f"raster '{raster}' has no CRS: polygons are in pixel coordinates (x=column, y=row) "
                     f"and areas use the model's ground sample distance {spec.gsd_m} m")
    return found + [f"raster '{raster}': {note}" for note in plan.notes]


def segment_raster(
    raster: str | Path,
    out: str | Path,
    predictor: Predictor,
    options: SegmentOptions = SegmentOptions(),
    model_label: str = "",
    progress: Progress | None = None,
) -> SegmentResult:
    """Segment `raster` with `predictor` and write polygons to `out` (.gpkg, .shp, .geojson).

    `progress` (default: silent, never cancelled): `started(n_tiles)` once the raster and output are checked,
    before the first tile; `advance(done, total)` per batch; `warning(text)`; `cancelled()` polled per batch.
    GDAL's block cache is bounded (`options.gdal_cache_mb`) so that memory does not grow with the raster.
    """
    with rasterio.Env(GDAL_CACHEMAX=options.gdal_cache_mb):
        return _segment(raster, out, predictor, options, model_label, progress or NoProgress())


def _segment(raster: str | Path, out: str | Path, predictor: Predictor, options: SegmentOptions, model_label: str,
             progress: Progress) -> SegmentResult:
    spec = predictor.spec
    task = task_of(spec)
    tile_size, settings = resolve_settings(spec, options)
    start = time.perf_counter()
    forward_before = predictor.forward_seconds
    with open_source(raster, spec, options) as src:
        writer, notes = check_outputs(out, src, options, spec, raster)
        plan = plan_tiles(raster, src, spec, options, tile_size, settings.overlap)
        tiles = plan.tiles
        progress.started(len(tiles))
        for text in notes + raster_warnings(raster, src, spec, plan):
            progress.warning(text)
        batch_size = options.batch_size or (8 if predictor.device.type == "cuda" else 1)
        sink = FeatureSink(writer, src, spec, model_label or spec.name, Path(raster).name, plan.keep)
        stage = task.writer_stage(sink, tiles, settings, progress)
        with writer:
            reader = Producer(read_batches(src, tiles, batch_size, spec, plan.scaling, plan.masked),
                              options.queue_depth)
            post = Consumer(stage, options.queue_depth)
            try:
                score_thr = settings.score_threshold
                with predictor.min_score(score_thr) if score_thr is not None else nullcontext():
                    for batch in reader:
                        if progress.cancelled():
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
            if progress.cancelled():
                raise Cancelled()
            n = writer.count
            if options.tile_grid:  # before the output is committed: a failure here leaves the output as it was
                write_stage_tile_grid(options.tile_grid, stage, src, options.overwrite, plan.masked)
    return SegmentResult(str(out), n, len(tiles), round(time.perf_counter() - start, 3), stage.counts,
                         stage.peak_pending, stage.tiles_run,
                         round(predictor.forward_seconds - forward_before, 3), plan.notes, writer.layer_name)


def write_stage_tile_grid(path: str | Path, stage: RowStreamingStage, src: RasterSource,
                          overwrite: bool = False, masked: Mapping[Tile, str] | None = None) -> None:
    """The QA tile grid of a finished stage (its records, sorted row-major) on `src`'s working grid; the tiles in
    `masked` (skipped by the area masks) get their status from it."""
    masked = masked or {}
    records = sorted((TileRecord(r.tile, masked.get(r.tile, r.status), r.n_predictions) for r in stage.records),
                     key=lambda r: (r.tile.row_off, r.tile.col_off))
    write_tile_grid(path, records, src.work.transform, src.work.crs_wkt, overwrite)
