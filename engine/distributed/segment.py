"""Segmenting rasters on a Dask cluster: the client plans, workers run tile groups, the client merges and writes.

Client: checks every raster and output first (as `segment` does), then submits TileGroups (engine.distributed.work:
consecutive tiles of one tile row; a raster path, windows, model reference and options, never pixels) in
row-major order, at most `in_flight` at a time. Results are fed in that order, as they arrive, into the same
writer stages as the single-process pipeline (engine.tasks: streaming seam merge / probability stitching ->
atomic VectorWriter), one output per raster. The client therefore holds the merge frontier plus a bounded
number of results, whatever the raster sizes; workers hold a model and one group's tiles.
Progress counts tiles as their groups finish on any worker. On an error or a cancel (Cancelled, Ctrl-C) the
pending tasks are cancelled and the output in progress is removed (outputs of rasters already finished stay).
"""
from __future__ import annotations

import pickle
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rasterio

from engine.distributed.cluster import worker_threads
from engine.distributed.work import GroupResult, ModelCache, ModelRef, TileGroup, run_group
from engine.errors import Cancelled
from engine.inference.rasters import RasterJob
from engine.inference.segment import (
    SegmentOptions,
    SegmentResult,
    TilePlan,
    check_outputs,
    open_source,
    plan_tiles,
    raster_warnings,
    resolve_settings,
    write_stage_tile_grid,
)
from engine.progress import NoProgress, Progress
from engine.spec import ModelSpec
from engine.tasks import task_of
from engine.tasks.stage import FeatureSink, RowStreamingStage, WriterSettings
from engine.tiling import Tile, tiles_area

_POLL_S = 0.2  # how often the client looks at the futures, progress and cancel while it waits


@dataclass(frozen=True)
class DaskOptions:
    """How the work is cut and fed: tiles per task (a task never spans two tile rows) and tasks in flight."""

    group_tiles: int = 8
    in_flight: int = 0  # tasks submitted and not yet merged; 0: 2 per worker thread + 2


@dataclass
class DaskStats:
    """What a distributed run cost: model time per worker, task wall time, and bytes each way."""

    forward_seconds: dict[str, float] = field(default_factory=dict)  # worker address -> summed model time
    task_seconds: dict[str, float] = field(default_factory=dict)  # worker address -> summed task wall time
    tasks: int = 0
    tiles: int = 0
    bytes_to_workers: int = 0  # pickled TileGroups
    bytes_from_workers: int = 0  # pickled GroupResults
    workers: int = 0  # workers seen at the start


@dataclass
class DaskRun:
    results: list[SegmentResult]
    stats: DaskStats


def tile_groups(tiles: Sequence[Tile], group_tiles: int) -> list[tuple[int, int]]:
    """Index ranges [start, stop) cutting row-major `tiles` into runs of at most `group_tiles` consecutive
    tiles of one tile row (same `row_off`); every tile is in exactly one range, in order."""
    if group_tiles < 1:
        raise ValueError(f"group_tiles must be >= 1, got {group_tiles}")
    ranges, start = [], 0
    for i in range(1, len(tiles) + 1):
        if i == len(tiles) or tiles[i].row_off != tiles[start].row_off or i - start == group_tiles:
            ranges.append((start, i))
            start = i
    return ranges


@dataclass(frozen=True)
class _Planned:
    job: RasterJob
    plan: TilePlan
    grid: tuple[int, int, tuple[float, ...]]


def _plan_all(jobs: Sequence[RasterJob], spec: ModelSpec, options: SegmentOptions, tile_size: int,
              overlap: int) -> tuple[list[_Planned], list[str]]:
    """Check every raster and output before any work -> plans and the warnings to report."""
    planned, warnings = [], []
    for job in jobs:
        with open_source(job.raster, spec, options) as src:
            notes = check_outputs(job.out, src, options, spec, job.raster)[1]
            plan = plan_tiles(job.raster, src, spec, options, tile_size, overlap)
            planned.append(_Planned(job, plan, (src.work.height, src.work.width, tuple(src.work.transform)[:6])))
            warnings.extend(notes + raster_warnings(job.raster, src, spec, plan))
    return planned, warnings


def _groups(planned: Sequence[_Planned], model: ModelRef, options: SegmentOptions, settings: WriterSettings,
            group_tiles: int) -> Iterator[tuple[int, TileGroup]]:
    """(raster index, TileGroup) in the order the client merges them."""
    for index, p in enumerate(planned):
        tiles = p.plan.tiles
        area = tiles_area(tiles)
        for start, stop in tile_groups(tiles, group_tiles):
            skip = tuple(t for t in tiles[start:stop] if t in p.plan.masked)
            yield index, TileGroup(p.job.raster, tuple(tiles[start:stop]), area, p.grid, model, options,
                                   p.plan.scaling, settings, skip)


class _RasterOutput:
    """The writer side of one raster on the client: source (for the grid and CRS), atomic writer and stage."""

    def __init__(self, p: _Planned, spec: ModelSpec, options: SegmentOptions, settings: WriterSettings,
                 model_label: str) -> None:
        self.planned, self.options, self.start = p, options, time.perf_counter()
        self.forward_seconds = 0.0
        self.src = open_source(p.job.raster, spec, options)
        try:
            self.writer = check_outputs(p.job.out, self.src, options, spec, p.job.raster)[0]
            sink = FeatureSink(self.writer, self.src, spec, model_label or spec.name, Path(p.job.raster).name,
                               p.plan.keep)
            self.stage: RowStreamingStage = task_of(spec).writer_stage(sink, p.plan.tiles, settings, NoProgress())
            self.writer.open()
        except BaseException:
            self.src.close()
            raise

    def add(self, group: TileGroup, result: GroupResult) -> None:
        run = [(t, r) for t, r in zip(group.tiles, result.results) if r is not None]
        skipped = [t for t, r in zip(group.tiles, result.results) if r is None]
        self.stage.add_results([t for t, _ in run], [r for _, r in run], skipped, len(group.tiles))
        self.forward_seconds += result.forward_seconds

    def finish(self) -> SegmentResult:
        """Write the optional tile grid, then commit the output (a tile-grid failure leaves the output as it was)."""
        try:
            if self.options.tile_grid:
                write_stage_tile_grid(self.options.tile_grid, self.stage, self.src, self.options.overwrite,
                                      self.planned.plan.masked)
            self.writer.close()
        finally:
            self.src.close()
        p = self.planned
        return SegmentResult(str(p.job.out), self.writer.count, len(p.plan.tiles),
                             round(time.perf_counter() - self.start, 3), self.stage.counts, self.stage.peak_pending,
                             self.stage.tiles_run, round(self.forward_seconds, 3), p.plan.notes,
                             self.writer.layer_name)

    def abort(self) -> None:
        """Drop the partial output (the writer's temporary folder) and close the raster."""
        try:
            self.writer.abort()
        finally:
            self.src.close()


def segment_rasters_dask(client, jobs: Sequence[RasterJob], model: ModelRef, spec: ModelSpec,
                         options: SegmentOptions = SegmentOptions(), model_label: str = "",
                         progress: Progress | None = None, dask: DaskOptions = DaskOptions()) -> DaskRun:
    """Segment each job's raster with `model` on the workers of `client` (a distributed.Client); outputs as
    `segment_raster` writes them, feature for feature. `spec`: the model's spec (read on the client)."""
    with rasterio.Env(GDAL_CACHEMAX=options.gdal_cache_mb):
        return _segment(client, jobs, model, spec, options, model_label, progress or NoProgress(), dask)


def _segment(client, jobs: Sequence[RasterJob], model: ModelRef, spec: ModelSpec, options: SegmentOptions,
             model_label: str, progress: Progress, dask: DaskOptions) -> DaskRun:
    tile_size, settings = resolve_settings(spec, options)
    planned, warnings = _plan_all(jobs, spec, options, tile_size, settings.overlap)
    progress.started(sum(len(p.plan.tiles) for p in planned))
    for text in warnings:
        progress.warning(text)
    client.register_plugin(ModelCache(), name=ModelCache.name)
    stats = DaskStats(workers=len(client.nthreads()))
    window = dask.in_flight or 2 * worker_threads(client) + 2
    total = sum(len(p.plan.tiles) for p in planned)
    feeder = _Feeder(client, _groups(planned, model, options, settings, dask.group_tiles), window, stats, total)
    results: list[SegmentResult] = []
    current: _RasterOutput | None = None
    try:
        for index, group, result in feeder.in_order(progress):
            if current is None:
                current = _RasterOutput(planned[index], spec, options, settings, model_label)
            current.add(group, result)
            if current.stage.done == current.stage.total:
                results.append(current.finish())
                current = None
    except BaseException:
        feeder.cancel()
        if current is not None:
            current.abort()
        raise
    return DaskRun(results, stats)


class _Feeder:
    """Submits TileGroups with at most `window` not yet handed out, and hands their results out in order."""

    def __init__(self, client, groups: Iterator[tuple[int, TileGroup]], window: int, stats: DaskStats,
                 total: int) -> None:
        self.client, self.groups, self.window, self.stats = client, groups, max(1, window), stats
        self.prefix = f"rsseg-{uuid.uuid4().hex[:8]}"  # task keys of this run
        self.pending: deque = deque()  # (raster index, group, future) in merge order
        self.arrived: set[str] = set()  # keys of finished futures already counted in the progress
        self.count, self.tiles_arrived, self.total = 0, 0, total

    def _fill(self) -> None:
        while len(self.pending) < self.window:
            item = next(self.groups, None)
            if item is None:
                return
            index, group = item
            self.stats.bytes_to_workers += len(pickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL))
            future = self.client.submit(run_group, group, key=f"{self.prefix}-{self.count}", pure=False)
            self.count += 1
            self.pending.append((index, group, future))

    def _wait_for_head(self, progress: Progress) -> None:
        from distributed import wait

        head = self.pending[0][2]
        while True:
            for _, group, future in self.pending:
                if future.key not in self.arrived and future.done():
                    self.arrived.add(future.key)
                    self.tiles_arrived += len(group.tiles)
                    progress.advance(self.tiles_arrived, self.total)
            if progress.cancelled():
                raise Cancelled()
            if head.done():
                return
            try:
                wait([f for _, _, f in self.pending], timeout=_POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass

    def in_order(self, progress: Progress) -> Iterator[tuple[int, TileGroup, GroupResult]]:
        """(raster index, group, result) in submission order, as soon as each is there."""
        self._fill()
        while self.pending:
            self._wait_for_head(progress)
            index, group, future = self.pending.popleft()
            payload = future.result()
            self.arrived.discard(future.key)
            future.release()
            result: GroupResult = pickle.loads(payload)
            self.stats.tasks += 1
            self.stats.tiles += len(group.tiles)
            self.stats.bytes_from_workers += len(payload)
            self.stats.forward_seconds[result.worker] = (self.stats.forward_seconds.get(result.worker, 0.0)
                                                         + result.forward_seconds)
            self.stats.task_seconds[result.worker] = self.stats.task_seconds.get(result.worker, 0.0) + result.seconds
            del payload
            self._fill()
            yield index, group, result

    def cancel(self) -> None:
        """Cancel every task not yet handed out (on the workers too)."""
        futures = [f for _, _, f in self.pending]
        self.pending.clear()
        if futures:
            try:
                self.client.cancel(futures, force=True)
            except Exception:  # noqa: BLE001 - the cluster may be going down already; it is closed next
                pass
