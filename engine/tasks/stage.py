"""The writer stage of segment_raster, shared by every task: per-tile model outputs in row-major order ->
features written as soon as no later tile can change them.

A task's stage implements three steps: `tile_result` (one tile's model output -> a compact, picklable
result; pure, so a Dask worker computes it where the model ran: engine.distributed), `add_result` (that
result into the merge state; returns the tile's prediction count for the QA grid) and `release(frontier)`
(the features whose rows lie above `frontier` are final). The base keeps the bookkeeping: the frontier
after each batch (the smallest window row of the tiles still to come), progress, one QA record per tile
and the feature count per class, and writes every feature through the one typed `write_feature`, after the sink's
`keep` filter (the area masks of engine.inference.area_masks: one place for every task, in this process or on Dask).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from engine.merge import row_frontiers
from engine.progress import Progress
from engine.raster.source import RasterSource
from engine.spec import ModelSpec
from engine.tiling import Tile, tiles_area
from engine.vector import VectorWriter, geometry_area_m2, pixel_area_m2
from engine.vector.tile_grid import TileRecord


@dataclass
class TileBatch:
    """Tiles read together (one model call) and, once predicted, their outputs."""

    tiles: list[Tile]  # tiles of this batch that run through the model
    images: list[np.ndarray]  # per run tile: normalised [C,h,w] float32
    skipped: list[Tile]  # all-nodata tiles (never run)
    size: int  # tiles in the batch, run or not
    valid: list[np.ndarray | None] = field(default_factory=list)  # per run tile: [h,w] bool, None = all valid
    outputs: list[dict[str, np.ndarray]] | None = None  # per run tile: the task's converted model output


@dataclass(frozen=True)
class WriterSettings:
    """segment_raster's options as the writer stages need them, the model's defaults filled in."""

    overlap: int  # pixels shared by neighbouring tile windows
    score_threshold: float | None  # drop predictions scoring below; None: no cut (semantic default)
    mask_threshold: float  # instance mask probability -> inside
    merge_threshold: float = 0.5  # instance seam duplicates: intersection / smaller part
    duplicate_containment: float | None = 0.8  # instance: drop a detection this much inside a stronger one
    min_area: int = 4  # semantic: components of fewer working-grid pixels are dropped
    simplify: float = 0.0  # polygon simplification tolerance, map units
    count_regions: bool = False  # semantic: trace each tile's regions for the QA grid (not free)


@dataclass(frozen=True)
class FeatureSink:
    """Where features go: the output layer, the raster (its working grid and CRS), the model and names, and which."""

    writer: VectorWriter
    src: RasterSource
    spec: ModelSpec
    model_label: str  # the model's name in the output's "model" attribute
    source: str  # the raster's file name in the "source" attribute
    keep: Callable[[BaseGeometry], bool] | None = None  # area masks: False for a geometry (working grid's map
    # coordinates) not to write; None: every feature is written


@dataclass(frozen=True)
class Feature:
    """One output polygon: geometry in the working grid's map coordinates and its attributes."""

    geometry: BaseGeometry
    class_id: int
    score: float  # instance: detection score; semantic: mean class probability inside it
    n_tiles: int  # tiles it was predicted in (semantic: tile cores it overlaps)
    merged: bool  # joined across tile seams (semantic: across strips)


def write_feature(sink: FeatureSink, feature: Feature) -> str:
    """Write `feature` with its area (m^2) and the schema's attributes, in the raster's own CRS
    (features traced on a reprojected working grid are transformed back). Returns its class name."""
    work, info = sink.src.work, sink.src.info
    geom = feature.geometry
    area = geometry_area_m2(geom, work.crs_wkt) if work.georeferenced else pixel_area_m2(geom, sink.spec.gsd_m)
    if sink.src.plan.reprojected:  # traced in UTM: back to the raster's own CRS
        geom = shape(transform_geom(work.crs_wkt, info.crs_wkt, mapping(geom)))
    name = sink.spec.class_name(feature.class_id)
    sink.writer.write(geom, {
        "class_id": feature.class_id, "class_name": name, "score": round(feature.score, 4),
        "area_m2": round(area, 2), "n_tiles": feature.n_tiles, "merged": int(feature.merged),
        "model": sink.model_label, "source": sink.source,
    })
    return name


class RowStreamingStage(ABC):
    """Writer stage: `__call__(batch)` for each TileBatch (or `add_results` with results computed elsewhere), in
    the tiles' row-major order (a pipeline thread)."""

    def __init__(self, sink: FeatureSink, tiles: Sequence[Tile], settings: WriterSettings,
                 progress: Progress) -> None:
        self.sink, self.settings, self.progress = sink, settings, progress
        self.area = tiles_area(list(tiles))  # (row0, col0, row1, col1) of the tiled area
        self.frontiers = row_frontiers(tiles)
        self.total, self.done, self.last_frontier = len(tiles), 0, -1
        self.records: list[TileRecord] = []  # per tile: a few integers, for the optional QA grid
        self.counts: dict[str, int] = {}  # features written per class name

    @abstractmethod
    def tile_result(self, tile: Tile, output: dict[str, np.ndarray], valid: np.ndarray | None) -> Any:
        """One run tile's model output (`valid`: [h,w] bool, None = all valid) -> its compact, picklable result.
        Depends only on the settings, the tiled area and the spec (what a Dask worker computes)."""

    @abstractmethod
    def add_result(self, tile: Tile, result: Any) -> int:
        """Take one run tile's `tile_result` into the merge state -> its prediction count (QA)."""

    def add_tile(self, tile: Tile, output: dict[str, np.ndarray], valid: np.ndarray | None) -> int:
        """Take one run tile's model output -> its prediction count (QA)."""
        return self.add_result(tile, self.tile_result(tile, output, valid))

    @abstractmethod
    def release(self, frontier: int | None) -> Iterable[Feature]:
        """The features no tile at or below working-grid row `frontier` can change (None: all the rest)."""

    @property
    @abstractmethod
    def peak_pending(self) -> int:
        """Most predictions held at once waiting for later tiles (the streaming memory bound)."""

    @property
    def tiles_run(self) -> int:
        """Tiles that went through the model (the others were all nodata, or left out by the area masks)."""
        return sum(r.status == "run" for r in self.records)

    def __call__(self, batch: TileBatch) -> None:
        results = [self.tile_result(tile, output, valid)
                   for tile, output, valid in zip(batch.tiles, batch.outputs or [], batch.valid)]
        self.add_results(batch.tiles, results, batch.skipped, batch.size)

    def add_results(self, tiles: Sequence[Tile], results: Sequence[Any], skipped: Sequence[Tile], size: int) -> None:
        """The next `size` tiles in row-major order: `tiles` run with their `tile_result`s, `skipped` all nodata.
        Writes what became final and reports progress."""
        self.records.extend(TileRecord(t, "nodata", 0) for t in skipped)
        for tile, result in zip(tiles, results):
            self.records.append(TileRecord(tile, "run", self.add_result(tile, result)))
        self.done += size
        frontier = self.frontiers[self.done] if self.done < self.total else None
        if frontier != self.last_frontier:  # a tile row is complete (None: all are): write what is final
            keep = self.sink.keep
            for feature in self.release(frontier):
                if keep is not None and not keep(feature.geometry):
                    continue
                name = write_feature(self.sink, feature)
                self.counts[name] = self.counts.get(name, 0) + 1
            self.last_frontier = frontier
        self.progress.advance(self.done, self.total)
